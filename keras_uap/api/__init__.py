"""The paper's method on any Keras image classifier and any labelled image set.

Example:

    from keras_uap.api import fooling_curve, load_images, svd_universal_perturbation

    x, y = load_images("my_images.npz")
    result = svd_universal_perturbation("my_model.keras", x, y, attack="deepfool", sample_size=500)
    curve = fooling_curve("my_model.keras", x, y, result.perturbation, eps=[0.5, 1, 2, 4])
"""

from keras_uap.api._checks import ArgumentError
from keras_uap.api.classifier import OUTPUT_KINDS, Classifier, load_classifier
from keras_uap.api.datasets import check_compatible, load_images
from keras_uap.api.distribute import STRATEGIES, BatchRunner, make_strategy, map_batches
from keras_uap.api.perturbation import (
    ATTACKS,
    NORMS,
    FoolingCurve,
    UniversalPerturbation,
    attack_directions,
    default_sign_norms,
    fooling_curve,
    predict_labels,
    draw_sample,
    svd_universal_perturbation,
    universal_from_directions,
)
from keras_uap.api.sweep import SweepResult, sweep

__all__ = [
    "ArgumentError",
    "ATTACKS",
    "NORMS",
    "OUTPUT_KINDS",
    "STRATEGIES",
    "Classifier",
    "load_classifier",
    "load_images",
    "check_compatible",
    "make_strategy",
    "BatchRunner",
    "map_batches",
    "UniversalPerturbation",
    "FoolingCurve",
    "attack_directions",
    "predict_labels",
    "svd_universal_perturbation",
    "draw_sample",
    "universal_from_directions",
    "default_sign_norms",
    "fooling_curve",
    "SweepResult",
    "sweep",
]
