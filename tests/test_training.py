"""Training and export on a small real-MNIST subset (tiny runs; the paper-scale
run belongs to `keras-uap run-all`)."""

import json
import os

import numpy as np
import tensorflow as tf

from keras_uap.pipelines.study import train
from keras_uap.pipelines.exported_model import load_exported_model
from keras_uap.training import rotated_training_dataset


def test_exports_every_model_with_savedmodel_and_keras_file(tiny_run):
    cfg, results = tiny_run
    x = np.load(os.path.join(results["data"].output_dir, "test.npz"))["x"][:8]
    for model in ("stdcnn", "gcnn", "roteqnet"):
        export = results[f"train-{model}"].output_dir
        assert export == os.path.abspath(os.path.join(cfg.export_dir, f"mnist-{model}"))
        served = tf.saved_model.load(os.path.join(export, "saved_model")).signatures["serving_default"]
        spec = served.structured_input_signature[1]
        (input_spec,) = spec.values()
        assert input_spec.dtype == tf.float32 and input_spec.shape.as_list() == [None, 28, 28, 1]
        (logits,) = served(tf.constant(x)).values()
        keras_logits = load_exported_model(export).predict_on_batch(x)
        np.testing.assert_allclose(logits.numpy(), keras_logits, atol=1e-5)
        assert logits.shape == (8, 10)
        with open(os.path.join(export, "metrics.json")) as f:
            metrics = json.load(f)
        assert len(metrics["history"]["loss"]) == 1


def test_equivariant_models_learn_something_in_one_short_epoch(tiny_run):
    _, results = tiny_run
    # 3,000 rotated images, one epoch: far from converged, but well above chance (0.1).
    assert results["train-gcnn"].summary["test_accuracy"] > 0.2
    assert results["train-roteqnet"].summary["test_accuracy"] > 0.2


def test_roteqnet_trains_with_its_own_settings_unless_the_user_chose(tiny_run):
    cfg, results = tiny_run
    with open(os.path.join(results["train-roteqnet"].output_dir, "lineage.json")) as f:
        params = json.load(f)["params"]
    assert params["optimizer"] == "adam" and params["learning_rate"] == 1e-3
    assert cfg.for_model("stdcnn").train.optimizer == "sgd"
    import dataclasses

    chosen = dataclasses.replace(cfg, user_set=("train.epochs",),
                                 model_settings={"roteqnet": {"train": {"epochs": 3, "momentum": 0.9}}})
    chosen = chosen.replace_params(**{"train.epochs": 2})
    assert chosen.for_model("roteqnet").train.epochs == 2
    assert chosen.for_model("roteqnet").train.momentum == 0.9
    assert dataclasses.replace(chosen, user_set=()).for_model("roteqnet").train.epochs == 3


def test_tensorboard_logs_are_written(tiny_run):
    cfg, _ = tiny_run
    logs = os.path.join(cfg.run_dir, "tensorboard", "train-gcnn")
    found = [f for _, _, files in os.walk(logs) for f in files if "tfevents" in f]
    assert found


def test_rerun_is_cached_and_same_seed_gives_same_weights(tiny_run, tmp_path):
    cfg, results = tiny_run
    assert train(cfg, "stdcnn").cached
    import dataclasses

    again = dataclasses.replace(cfg, export_dir=str(tmp_path / "export"), force=True)
    second = train(again, "stdcnn")
    first_model = load_exported_model(results["train-stdcnn"].output_dir)
    second_model = load_exported_model(second.output_dir)
    for a, b in zip(first_model.get_weights(), second_model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_roteqnet_trains_to_the_same_weights_twice(tiny_run):
    """RotEqNet's RotConv runs XLA kernels (window columns, orientation pooling);
    with the seed and TF's deterministic kernels its training must still repeat
    bit for bit."""
    from keras_uap.models import build_roteqnet
    from keras_uap.training import set_determinism, train_model

    _, results = tiny_run
    data = np.load(os.path.join(results["data"].output_dir, "train.npz"))
    x, y = data["x"][:200], data["y"][:200]
    weights, logits = [], []
    for _ in range(2):
        set_determinism(0)
        model = build_roteqnet()
        train_model(model, (x, y), (x[:40], y[:40]), epochs=1, batch_size=64, optimizer="adam",
                    learning_rate=1e-3, seed=0, verbose=0)
        weights.append(model.get_weights())
        logits.append(model(x[:37], training=False).numpy())  # 37: a padded batch
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(*logits)
    assert not np.array_equal(weights[0][0], build_roteqnet().get_weights()[0])


def test_each_epoch_sees_new_rotations_and_streams_are_reproducible():
    images = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    labels = np.arange(10)
    batches = [x.numpy() for x, _ in rotated_training_dataset(images, labels, 10, 2, seed=5)]
    assert len(batches) == 2 and not np.allclose(batches[0].sum((1, 2, 3)), batches[1].sum((1, 2, 3)))
    again = [x.numpy() for x, _ in rotated_training_dataset(images, labels, 10, 2, seed=5)]
    np.testing.assert_array_equal(batches[0], again[0])
    assert batches[0].min() >= 0 and batches[0].max() <= 1


def test_the_rotation_range_bounds_the_training_angles():
    images = np.random.default_rng(1).integers(0, 256, (8, 28, 28), dtype=np.uint8)
    labels = np.arange(8)

    def stream(x, **kwargs):
        (batch, y), = rotated_training_dataset(x, labels, 8, 1, seed=3, **kwargs)
        return batch.numpy(), y.numpy()

    upright, order = stream(images, max_angle=0.0)
    np.testing.assert_allclose(upright[..., 0], images[order] / 255.0, atol=1e-6)
    turned, same_order = stream(images)
    np.testing.assert_array_equal(same_order, order)
    assert np.abs(turned - upright).max() > 0.5
    np.testing.assert_array_equal(turned, stream(images, max_angle=180.0)[0])
    # Float images with a channel axis, already in [0, 1], stream the same pixels.
    np.testing.assert_allclose(stream(images[..., None] / np.float32(255.0))[0], turned, atol=1e-6)


def test_quick_profile_trains_stdcnn_and_gcnn_with_adam_unless_epochs_are_chosen():
    from keras_uap.pipelines.study import quick_config

    quick = quick_config()
    for model in ("stdcnn", "gcnn"):
        chosen = quick.for_model(model).train
        assert (chosen.optimizer, chosen.learning_rate, chosen.epochs) == ("adam", 1e-3, 3)
    assert quick.for_model("roteqnet").train.epochs == 1
    assert quick_config({"train.epochs": 5}, user_set=("train.epochs",)).for_model("gcnn").train.epochs == 5
