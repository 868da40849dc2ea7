"""One worker of a two-worker `MultiWorkerMirroredStrategy` (TF_CONFIG set by
tests/test_user_study.py): runs keras_uap.api with and without the strategy on
the same arrays and prints the largest differences as JSON."""

import json

import tensorflow as tf

strategy = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from keras_uap.api import attack_directions, fooling_curve, load_classifier, svd_universal_perturbation  # noqa: E402


def main():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10, 12, 2)), layers.Conv2D(4, 3, activation="relu"), layers.Flatten(),
                              layers.Dense(5)])
    classifier = load_classifier(model)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(22, 10, 12, 2)).astype(np.float32)
    y = rng.integers(0, 5, 22)
    diffs = {}

    def compare(name, run):
        single, multi = np.asarray(run(None), np.float64), np.asarray(run(strategy), np.float64)
        assert single.shape == multi.shape, (name, single.shape, multi.shape)
        diffs[name] = float(np.max(np.abs(single - multi)))

    # 22 inputs in batches of 7 leave a last batch of 1, shorter than the two replicas.
    for attack in ("gradient", "deepfool"):
        compare(attack, lambda s: attack_directions(classifier, x, y, attack, batch_size=7, strategy=s))
    compare("svd", lambda s: svd_universal_perturbation(classifier, x, y, "gradient", sample_size=15, batch_size=8,
                                                        strategy=s).perturbation)
    compare("curve", lambda s: fooling_curve(classifier, x, y, np.ones((10, 12, 2)), [1.0, 3.0], batch_size=11,
                                             strategy=s).error_rate)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "max_abs_diff": diffs}))


if __name__ == "__main__":
    main()
