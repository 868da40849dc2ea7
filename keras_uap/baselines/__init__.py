"""Baseline universal perturbations to compare the top singular vector with:
the iterative universal perturbation (Moosavi-Dezfooli et al., 2017),
class-mean difference directions (Tramer et al., 2017) and L-infinity
sign perturbations."""

from keras_uap.baselines.compare import METHODS, BuiltPerturbation, build_universal_perturbations
from keras_uap.baselines.class_mean import best_class_mean_direction, class_mean_directions
from keras_uap.baselines.iterative_uap import IterativeUAPResult, iterative_uap, project_perturbation
from keras_uap.baselines.linf import linf_perturbation

__all__ = [
    "METHODS",
    "BuiltPerturbation",
    "build_universal_perturbations",
    "IterativeUAPResult",
    "best_class_mean_direction",
    "class_mean_directions",
    "iterative_uap",
    "linf_perturbation",
    "project_perturbation",
]
