"""Runs keras_uap.api with and without a two-replica MirroredStrategy and prints
the largest differences as JSON. A separate process: logical CPU devices must
be configured before TensorFlow initialises (see test_api.py)."""

import json

import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from keras_uap.api import (BatchRunner, attack_directions, fooling_curve, load_classifier,  # noqa: E402
                           make_strategy, predict_labels, svd_universal_perturbation)


def main():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10, 12, 2)), layers.Conv2D(4, 3, activation="relu"), layers.Flatten(),
                              layers.Dense(5)])
    classifier = load_classifier(model)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(23, 10, 12, 2)).astype(np.float32)
    y = rng.integers(0, 5, 23)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def custom(logits_fn, xb, yb):
        return tf.sign(xb - 0.5) * tf.cast(yb[:, None, None, None] + 1, tf.float32)

    diffs = {}

    def compare(name, run):
        single, multi = np.asarray(run(None), np.float64), np.asarray(run(mirrored), np.float64)
        assert single.shape == multi.shape, (name, single.shape, multi.shape)
        diffs[name] = float(np.max(np.abs(single - multi))) if single.size else 0.0

    # Batch size 7 leaves a last batch of 2 (one input per replica); 1 leaves replica 1 empty.
    for batch_size in (7, 1):
        compare(f"labels/{batch_size}", lambda s: predict_labels(classifier, x, batch_size, s))
        for attack in ("gradient", "fgsm", "deepfool", custom):
            name = attack if isinstance(attack, str) else "custom"
            compare(f"{name}/{batch_size}",
                    lambda s: attack_directions(classifier, x, y, attack, batch_size=batch_size, strategy=s))
    compare("svd", lambda s: svd_universal_perturbation(classifier, x, None, "deepfool", sample_size=17,
                                                        batch_size=6, strategy=s).perturbation)
    v = svd_universal_perturbation(classifier, x, y, "gradient", sample_size=17).perturbation
    for norm, eps in (("l2", [0.0, 1.0, 3.0]), ("linf", [0.05, 0.2])):
        compare(f"curve/{norm}", lambda s: np.concatenate([
            [c.error_rate, c.fooling_rate] for c in [fooling_curve(classifier, x, y, v, eps, norm, 5, s)]]))
    def logits_and_labels(xb):
        logits = classifier.logits_fn(xb)
        return logits, tf.argmax(logits, axis=1)

    def joined(parts):
        return np.concatenate([parts[0], parts[1][:, None]], axis=1)

    # A function returning a tuple, split over the replicas compiled and eagerly.
    for compiled in (True, False):
        compare(f"tuple/{compiled}", lambda s: joined(BatchRunner(logits_and_labels, s, compiled)(x)))
    # Whole batches, one per replica (23 inputs: 12 and 11), against the same batches one after the other.
    batches = [(x[:12],), (x[12:],)]
    compare("batches", lambda s: np.concatenate([
        joined(r) for group in ([batches] if s else [batches[:1], batches[1:]])
        for r in BatchRunner(logits_and_labels, s, compiled=False).run_batches(group)]))
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync,
                      "default_replicas": make_strategy("mirrored").num_replicas_in_sync,
                      "none": make_strategy("none"), "max_abs_diff": diffs}))


if __name__ == "__main__":
    main()
