"""The paper's universal perturbation for any image classifier, and its fooling curve.

The universal perturbation is the top right singular vector of the matrix
whose rows are per-input attack directions (any attack of the registry,
`keras_uap.method.ATTACKS`), each scaled to unit L2 norm. The SVD fixes it
only up to sign; the sign kept is the one that raises the sample's loss.
This module checks the user's arguments and runs `keras_uap.method`, the
core the study stages share, so a study's published vectors are the ones
these functions return.
"""

import dataclasses
import math
import numbers

import numpy as np
import tensorflow as tf

from keras_uap.api._checks import (
    ArgumentError,
    check_choice,
    check_clip_range,
    check_positive_int,
    check_seed,
    range_if_outside,
)
from keras_uap.api.classifier import load_classifier
from keras_uap.api.datasets import check_compatible, prepare_labels
from keras_uap.api.distribute import BatchRunner, map_batches
from keras_uap.method import default_sign_norms as method_default_sign_norms
from keras_uap.method import (
    ATTACK_NAMES,
    AttackParams,
    UniversalPerturbation,
    draw_sample,
    fooling_curves,
    get_attack,
    svd_direction,
    universal_perturbation,
)

__all__ = ["ATTACKS", "NORMS", "UniversalPerturbation", "FoolingCurve", "attack_directions", "predict_labels",
           "svd_universal_perturbation", "draw_sample", "universal_from_directions", "default_sign_norms",
           "fooling_curve"]

ATTACKS = ATTACK_NAMES
NORMS = ("l2", "linf")


@dataclasses.dataclass(frozen=True)
class FoolingCurve:
    """The result of `fooling_curve`: one rate per norm of `eps`.

    Attributes:
        eps: the perturbation sizes, float64.
        error_rate: fraction of perturbed inputs misclassified (against `y`).
        fooling_rate: fraction whose prediction differs from the clean one.
        clean_error_rate: the error rate without perturbation.
        norm: "l2" or "linf".
    """

    eps: np.ndarray
    error_rate: np.ndarray
    fooling_rate: np.ndarray
    clean_error_rate: float
    norm: str


def _runner(classifier, key, make_fn, strategy, compiled):
    """The `BatchRunner` of `make_fn()` cached on `classifier` under `key` and
    `strategy` (a new tf.function per call would retrace every time)."""
    key = (key, strategy, compiled)
    if key not in classifier.runners:
        classifier.runners[key] = BatchRunner(make_fn(), strategy, compiled=compiled)
    return classifier.runners[key]


def _attack_fn(attack, classifier, clip_min, clip_max):
    """(per-batch function (x, y) -> directions, whether it can be traced)."""
    logits_fn = classifier.logits_fn
    if callable(attack):
        return (lambda x, y: tf.convert_to_tensor(attack(logits_fn, x, y), tf.float32)), False
    check_choice("attack", attack, ATTACKS)
    found, params = get_attack(attack), AttackParams(clip_min=clip_min, clip_max=clip_max)
    return (lambda x, y: found.run(logits_fn, x, y, params).direction), found.traceable


def predict_labels(classifier, x, batch_size=1000, strategy=None):
    """The model's arg-max labels of `x`, int64 (N,), batch by batch."""
    runner = _runner(classifier, "labels", lambda: classifier.predict_labels, strategy, True)
    return map_batches(runner, [np.asarray(x, np.float32)], batch_size).astype(np.int64)


def attack_directions(model, x, y, attack="deepfool", clip_min=0.0, clip_max=1.0, batch_size=128, strategy=None,
                      output="auto"):
    """Per-input attack directions, (N, *input_shape) float32, batch by batch.

    Args: as for `svd_universal_perturbation`, with `y` required.
    """
    classifier = load_classifier(model, output)
    clip_min, clip_max = check_clip_range(clip_min, clip_max)
    batch_size = check_positive_int("batch_size", batch_size)
    _check_strategy(strategy)
    if y is None:
        raise ArgumentError("`y` is required: the labels the attack moves the inputs away from")
    x, y = _checked_inputs(classifier, x, y, clip_min, clip_max)
    return _attack_directions(classifier, x, y, attack, clip_min, clip_max, batch_size, strategy)


def _attack_directions(classifier, x, y, attack, clip_min, clip_max, batch_size, strategy):
    """`attack_directions` on arguments already checked."""
    fn, compiled = _attack_fn(attack, classifier, clip_min, clip_max)
    # A callable is keyed by id: its cached runner keeps it alive, so the id is not reused.
    key = ("attack", attack if isinstance(attack, str) else id(attack), clip_min, clip_max)
    runner = _runner(classifier, key, lambda: fn, strategy, compiled)
    directions = map_batches(runner, [np.asarray(x, np.float32), np.asarray(y, np.int64)], batch_size)
    if directions.shape != np.shape(x):
        raise ArgumentError(f"the attack must return directions of the inputs' shape {np.shape(x)}. "
                            f"Received: shape={directions.shape}")
    return directions.astype(np.float32)


def _checked_inputs(classifier, x, y, clip_min, clip_max):
    """`x` as an array and `y` as int64 labels (or None), checked against the
    classifier and the valid range [clip_min, clip_max]."""
    try:
        x = np.asarray(x)
    except (TypeError, ValueError):
        x = None
    if x is None or x.ndim == 0 or x.dtype.kind not in "iuf":
        raise ArgumentError("`x` must be an array of numeric inputs (N, *input_shape)")
    if len(x) == 0:
        raise ArgumentError("`x` holds no inputs")
    if not np.all(np.isfinite(x)):
        raise ArgumentError("`x` holds NaN or infinite values")
    outside = range_if_outside(x, clip_min, clip_max)
    if outside:
        low, high = outside
        hint = "; 0..255 images: divide them by 255" if high > 1 and clip_max <= 1 else ""
        raise ArgumentError(f"`x` lies in [{low:g}, {high:g}], outside clip_min {clip_min:g} / clip_max "
                            f"{clip_max:g}; set those to the data's range{hint}")
    if y is not None:
        y = prepare_labels(y, "y")
        if len(y) != len(x):
            raise ArgumentError(f"`x` and `y` must have the same length. Received: {len(x)} and {len(y)}")
    check_compatible(classifier, x, y)
    return x, y


def _check_strategy(strategy):
    if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
        raise ArgumentError(f"`strategy` must be a tf.distribute.Strategy or None (for example "
                            f"make_strategy('mirrored')). Received: strategy={strategy!r}")


def svd_universal_perturbation(model, x, y=None, attack="deepfool", sample_size=100, clip_min=0.0, clip_max=1.0,
                               seed=0, batch_size=128, strategy=None, output="auto", sign_norms=None):
    """The universal perturbation of the paper for any image classifier.

    Attacks the `sample_size` inputs `draw_sample(len(x), sample_size,
    seed)`, scales each attack direction to unit L2 norm, and returns the top
    right singular vector of the resulting matrix (`tf.linalg.svd`), with the
    sign that misclassifies more of the sample over the L2 norms
    `sign_norms` (`keras_uap.method.universal_perturbation`, the study's
    own step: with the run's attacked test inputs and `--seed` this returns
    its published vector).

    Args:
        model: a `keras.Model`, a `.keras` path, a SavedModel directory or a
            `Classifier` (see `load_classifier`).
        x: images (N, *input_shape) in [clip_min, clip_max].
        y: int labels (N,), or None to use the model's clean predictions.
        attack: a name of `ATTACKS` with the study's default settings
            (`keras_uap.method.AttackParams`): "gradient" (input gradient of
            the cross-entropy), "fgsm" (its sign, unclipped),
            "fgsm_clipped", "deepfool" (`x_adv - x` of the L2 DeepFool
            attack, clipped to [clip_min, clip_max]), "pgd"; or a callable
            `(logits_fn, x_batch, y_batch) -> directions` of the batch's shape
            (the batches are float32 and int64 tensors; it runs eagerly).
        sample_size: how many inputs to attack (all of `x` if it has fewer).
        clip_min, clip_max: the valid input range.
        seed: seeds the choice of the sample.
        batch_size: inputs attacked at once (split over the replicas).
        strategy: a `tf.distribute.Strategy` to attack data-parallel over its
            replicas, or None.
        output: the model's output kind, "auto", "logits" or "probabilities".
        sign_norms: the L2 norms, in the data's units, over which the two
            signs' error rates on the sample are compared (area under the
            curve). None: `default_sign_norms` (the study's grid, scaled to
            the input's size and range).

    Returns:
        A `UniversalPerturbation`.

    Raises:
        UserError: a model that cannot be loaded, or inputs or labels that do
            not fit it; ArgumentError (a UserError and ValueError) for bad
            arguments, and for inputs that are not finite or lie outside
            [clip_min, clip_max] (0..255 images must be scaled first: the
            sign probe and DeepFool clip to that range).
    """
    classifier = load_classifier(model, output)
    sample_size = check_positive_int("sample_size", sample_size)
    batch_size = check_positive_int("batch_size", batch_size)
    # Checked before the attacks, the expensive part, rather than after them.
    clip_min, clip_max = check_clip_range(clip_min, clip_max)
    sign_norms = _checked_sign_norms(sign_norms)
    seed = check_seed(seed)
    _check_strategy(strategy)
    x, y = _checked_inputs(classifier, x, y, clip_min, clip_max)

    if y is None:
        y = predict_labels(classifier, x, batch_size, strategy)
    if sign_norms is None:
        sign_norms = method_default_sign_norms(np.shape(x)[1:], clip_min, clip_max)

    def directions_of(indices):
        # The sample is part of the checked inputs: the steps below do not check it again.
        directions = _attack_directions(classifier, np.asarray(x[indices], np.float32), y[indices], attack,
                                        clip_min, clip_max, batch_size, strategy)
        return _checked_directions(directions, np.shape(x[indices]))

    return universal_perturbation(np.asarray(x, np.float32), y, directions_of, classifier.logits_fn, sample_size,
                                  seed, sign_norms, clip_min, clip_max,
                                  attack=attack if isinstance(attack, str) else "custom")


def default_sign_norms(input_shape, clip_min=0.0, clip_max=1.0):
    """The L2 norms over which `svd_universal_perturbation` compares the two
    signs by default: the study's grid (L2 norms 1 to 20 on the paper's
    784-value images in [0, 1]) times `sqrt(d) / 28 * (clip_max - clip_min)`
    for inputs of `d` values, i.e. the same root-mean-square change per value
    whatever the input's size and range."""
    clip_min, clip_max = check_clip_range(clip_min, clip_max)
    return method_default_sign_norms(input_shape, clip_min, clip_max)


def _checked_sign_norms(sign_norms):
    """`sign_norms` as a tuple of floats (None stays None), or an ArgumentError."""
    if sign_norms is None:
        return None
    try:
        norms = tuple(float(e) for e in sign_norms)
    except (TypeError, ValueError):
        raise ArgumentError(f"`sign_norms` must be a sequence of L2 norms > 0. Received: sign_norms={sign_norms!r}")
    if not norms or any(not math.isfinite(e) or e <= 0 for e in norms):
        raise ArgumentError(f"`sign_norms` must be a sequence of finite L2 norms > 0. Received: sign_norms={sign_norms!r}")
    return norms


def universal_from_directions(model, directions, x, y, clip_min=0.0, clip_max=1.0, output="auto", sign_norms=None):
    """The SVD step of `svd_universal_perturbation`, on directions already computed.

    Args:
        model: as for `svd_universal_perturbation`.
        directions: per-input attack directions (N, *input_shape) of the inputs `x`.
        x, y: those inputs and their int labels (N,), used to choose the sign.
        clip_min, clip_max: the valid input range.
        output: the model's output kind.
        sign_norms: the L2 norms (data units) over which the signs are
            compared; None: `default_sign_norms`.

    Returns:
        (perturbation, singular_values): the top right singular vector of the
        unit-normalised directions as a float32 array of one input's shape,
        unit L2 norm, with the sign that misclassifies more of (x, y) over
        the norms `sign_norms`; and all singular values, descending.
    """
    classifier = load_classifier(model, output)
    clip_min, clip_max = check_clip_range(clip_min, clip_max)
    if y is None:
        raise ArgumentError("`y` is required: the labels whose error rates decide the sign")
    x, y = _checked_inputs(classifier, x, y, clip_min, clip_max)
    directions = _checked_directions(directions, np.shape(x))
    sign_norms = _checked_sign_norms(sign_norms)
    if sign_norms is None:
        sign_norms = method_default_sign_norms(np.shape(x)[1:], clip_min, clip_max)
    return svd_direction(directions, np.asarray(x, np.float32), y, classifier.logits_fn, sign_norms, clip_min,
                         clip_max)


def _checked_directions(directions, shape):
    """`directions` as float64, or an ArgumentError if they cannot give a perturbation."""
    directions = np.asarray(directions, np.float64)
    if directions.shape != tuple(shape):
        raise ArgumentError(f"`directions` must have the shape of `x`, {tuple(shape)}. "
                            f"Received: shape={directions.shape}")
    if not np.all(np.isfinite(directions)):
        raise ArgumentError("`directions` holds NaN or infinite values")
    if not np.any(directions):
        raise ArgumentError("every direction is zero: the attack found no direction to take")
    return directions


def _check_eps(eps):
    values = np.atleast_1d(np.asarray(eps, dtype=np.float64)) if _is_numbers(eps) else None
    if values is None or values.ndim != 1 or not values.size or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ArgumentError(f"`eps` must be a number or a list of finite numbers >= 0. Received: eps={eps!r}")
    return values


def _is_numbers(eps):
    if isinstance(eps, numbers.Real) and not isinstance(eps, bool):
        return True
    try:
        return np.asarray(eps).dtype.kind in "iuf"
    except (TypeError, ValueError):
        return False


def fooling_curve(model, x, y, perturbation, eps, norm="l2", batch_size=1000, strategy=None, clip_min=0.0,
                  clip_max=1.0, output="auto"):
    """Error and fooling rates of `x + eps * perturbation` for each `eps`.

    Each perturbed input is `clip(x + eps * v / ||v||_2)` (norm "l2") or
    `clip(x + eps * sign(v))` (norm "linf"), clipped to [clip_min, clip_max].
    The inputs are processed batch by batch (`keras_uap.method.fooling_curves`),
    so memory is bounded by the batch size, not by len(x) or len(eps).

    Args:
        model: as for `svd_universal_perturbation`.
        x: images (N, *input_shape).
        y: int labels (N,), or None to count errors against the clean
            predictions (then error and fooling rates coincide).
        perturbation: an array with the shape (or size) of one input, or a
            `UniversalPerturbation`.
        eps: a size or a list of sizes, >= 0.
        norm: "l2" or "linf".
        batch_size: inputs classified at once (split over the replicas).
        strategy: a `tf.distribute.Strategy`, or None.
        clip_min, clip_max: the valid input range.
        output: the model's output kind, "auto", "logits" or "probabilities".

    Returns:
        A `FoolingCurve`.
    """
    classifier = load_classifier(model, output)
    check_choice("norm", norm, NORMS)
    batch_size = check_positive_int("batch_size", batch_size)
    clip_min, clip_max = check_clip_range(clip_min, clip_max)
    eps = _check_eps(eps)
    _check_strategy(strategy)
    x, y = _checked_inputs(classifier, x, y, clip_min, clip_max)
    step = _unit_step(perturbation, norm, np.shape(x)[1:])

    runner = _runner(classifier, "labels", lambda: classifier.predict_labels, strategy, True)
    curves = fooling_curves(runner, x, y, [step], eps, clip_min=clip_min, clip_max=clip_max, batch_size=batch_size)
    return FoolingCurve(eps=eps, error_rate=curves.error_rate[:, 0], fooling_rate=curves.fooling_rate[:, 0],
                        clean_error_rate=curves.clean_error_rate, norm=norm)


def _unit_step(perturbation, norm, shape):
    v = getattr(perturbation, "perturbation", perturbation)
    try:
        v = np.asarray(v, np.float64)
    except (TypeError, ValueError):
        raise ArgumentError(f"`perturbation` must be an array of numbers. Received: {type(v).__name__}") from None
    if v.size != math.prod(shape):
        raise ArgumentError(f"`perturbation` must have the shape of one input, {tuple(shape)}. "
                            f"Received: shape={v.shape}")
    v = v.reshape(shape)
    if not np.all(np.isfinite(v)) or not np.any(v):
        raise ArgumentError("`perturbation` must be finite and not all zero")
    step = v / np.linalg.norm(v) if norm == "l2" else np.sign(v)
    return step.astype(np.float32)
