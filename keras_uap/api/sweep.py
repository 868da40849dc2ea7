"""The rotation-augmentation sweep on the user's own model builder.

The user's builder is called once per training range; each model is
trained with its inputs rotated afresh every epoch uniformly in [-r, r]
(`keras_uap.training.fit_rotated`), saved, then measured by the same cached
stages as `keras-uap sweep` (`keras_uap.pipelines.sweep.measure`) on the
user's test images upright and rotated in [-180, 180], and reported with
the same criterion (`keras_uap.report.sweep_report`).
"""

import dataclasses
import json
import math
import os
import re
import tempfile
from typing import Callable

import numpy as np

from keras_uap.api._checks import ArgumentError, check_positive_int, check_seed, range_if_outside
from keras_uap.api.datasets import prepare_images, prepare_labels
from keras_uap.errors import UserError

__all__ = ["SweepResult", "sweep"]

# The engine's grid is in L2 norm for 784 values in [0, 1]; other inputs get it
# scaled to the same root-mean-square change per value, as the sign's norms are.
_MNIST_VALUES = 28 * 28


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The result of `sweep`.

    Attributes:
        by_range: {"<r>": {"upright": ..., "rotated": ...}}, each test set's
            `accuracy`, `invariance`, `random` and, per attack ("gradient",
            "deepfool"), `top5_fraction`, `m100` and `all` with `eps50`,
            `eps80` and `error_rate_at_norm` (the `sweep.<model>` entry of
            the report's metrics.json).
        verdict: whether universal vulnerability grows with r by the fixed
            criterion: "holds", "does not hold" or "cannot be judged".
        reading: the verdict per attack with its ε80 values.
        report_dir: where `sweep.md`, `metrics.json` and the figures are.
    """

    by_range: dict
    verdict: str
    reading: dict
    report_dir: str


def _checked(x, y, name):
    try:
        x, y = prepare_images(x, f"x_{name}"), prepare_labels(y, f"y_{name}")
    except UserError as exc:
        raise ArgumentError(str(exc)) from None
    if len(x) != len(y) or not len(x):
        raise ArgumentError(f"`x_{name}` and `y_{name}` must hold the same number (> 0) of examples. "
                            f"Received: {len(x)} images, {len(y)} labels")
    outside = range_if_outside(x, 0.0, 1.0)
    if outside:
        raise ArgumentError(f"`x_{name}` must lie in [0, 1] (or be integers 0..255). Received values in "
                            f"[{outside[0]:g}, {outside[1]:g}]")
    return x, y


def _test_sets(root, x_test, y_test, seed):
    """The user's test images upright and rotated, as the data stage rotates its test split."""
    from keras_uap.data.rotation import rotate_images
    from keras_uap.pipelines.data_stage import random_angles, save_split

    os.makedirs(root, exist_ok=True)
    angles = random_angles(seed, 2, len(x_test))
    rotated = np.clip(np.asarray(rotate_images(x_test, angles)), 0.0, 1.0)
    paths = {"upright": os.path.join(root, "upright.npz"), "rotated": os.path.join(root, "rotated.npz")}
    save_split(paths["upright"], x_test, y_test, 0.0, 1.0, angles=np.zeros(len(x_test)))
    save_split(paths["rotated"], rotated, y_test, 0.0, 1.0, angles=angles)
    return paths


def sweep(build_model: Callable, x_train, y_train, x_test, y_test, ranges=(0, 45, 90, 180), *, epochs=3,
          batch_size=64, validation=None, attack_limit=None, seed=0, run_dir=None, name="model", log=None):
    """Trains `build_model(r)` at each training rotation range r and measures
    how universally attackable it is (the `keras-uap sweep` study).

    Args:
        build_model: a function of r (degrees) returning a compiled Keras
            model with logits outputs, saveable as `.keras`.
        x_train, y_train, x_test, y_test: images (N, H, W) or (N, H, W, C),
            floats in [0, 1] or integers 0..255, and int labels (N,).
        ranges: the training rotation ranges r in [0, 180] degrees (at least two).
        epochs, batch_size: training of each model.
        validation: (x, y) images (already rotated as they should be
            judged) to keep the best epoch on, or None (the last epoch).
        attack_limit: attack only the first N test inputs (None: all).
        seed: seeds initialisation, rotations and samples.
        run_dir: where models, stages and the report go (None: a new
            temporary directory, kept).
        name: the model's name in the report.
        log: a callable taking one line of progress, or None.

    Returns:
        A `SweepResult`.

    Example:

        def build(r):
            model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                                      keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
            model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            return model

        result = keras_uap.api.sweep(build, x_train, y_train, x_test, y_test, ranges=(0, 90, 180))
        print(result.verdict, result.by_range["180"]["rotated"]["deepfool"]["m100"]["eps80"])
    """
    from keras_uap.pipelines.study import StudyConfig
    from keras_uap.pipelines.sweep import ERROR_RATE_NORM, check_ranges, export_name, measure, report_sweep
    from keras_uap.training import fit_rotated, set_determinism

    if not callable(build_model):
        raise ArgumentError(f"`build_model` must be a function of the rotation range. Received: {build_model!r}")
    try:
        ranges = check_ranges(ranges)
    except UserError as exc:
        raise ArgumentError(str(exc)) from None
    epochs, batch_size = check_positive_int("epochs", epochs), check_positive_int("batch_size", batch_size)
    attack_limit, seed = check_positive_int("attack_limit", attack_limit, allow_none=True), check_seed(seed)
    x_train, y_train = _checked(x_train, y_train, "train")
    x_test, y_test = _checked(x_test, y_test, "test")
    if validation is not None:
        validation = _checked(*validation, "validation")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ArgumentError(f"`name` must be letters, digits and underscores. Received: name={name!r}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ArgumentError(f"`x_train` and `x_test` must have the same image shape. "
                            f"Received: {x_train.shape[1:]} and {x_test.shape[1:]}")
    run_dir = run_dir or tempfile.mkdtemp(prefix="keras-uap-sweep-")
    scale = math.sqrt(np.prod(x_test.shape[1:]) / _MNIST_VALUES)
    cfg = StudyConfig(run_dir=run_dir, export_dir=os.path.join(run_dir, "models"), seed=seed, verbose=0,
                      model_settings={})
    cfg = cfg.replace_params(**{"data.test_size": len(x_test), "directions.limit": attack_limit,
                                "universal.eps_grid": tuple(e * scale for e in cfg.universal.eps_grid)})
    test_sets = _test_sets(os.path.join(run_dir, "data"), x_test, y_test, seed)
    measured = {}
    for rotation in ranges:
        set_determinism(seed)
        model = build_model(rotation)
        if log:
            log(f"training {name} with rotations in [-{rotation:g}, {rotation:g}]")
        fit_rotated(model, (x_train, y_train), validation, epochs=epochs, batch_size=batch_size, seed=seed,
                    max_angle=rotation, verbose=0)
        model_dir = os.path.join(cfg.export_dir, export_name(name, rotation))
        os.makedirs(model_dir, exist_ok=True)
        model.save(os.path.join(model_dir, "model.keras"))
        measured[name, rotation] = measure(cfg, name, export_name(name, rotation),
                                           os.path.join(model_dir, "model.keras"), test_sets, log)
    report = report_sweep(cfg, (name,), ranges, measured, log, norm=ERROR_RATE_NORM * scale)
    with open(os.path.join(report.output_dir, "metrics.json")) as f:
        metrics = json.load(f)
    reading = metrics["sweep_reading"][name]
    return SweepResult(metrics["sweep"][name], reading["verdict"], reading["attacks"], report.output_dir)
