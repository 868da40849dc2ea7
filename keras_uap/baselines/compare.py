"""Every universal-perturbation method built from one sample, with its cost.

`build_universal_perturbations` gives the SVD-UAP (the paper's method, from
loss gradients and from DeepFool), the iterative UAP of Moosavi-Dezfooli et
al. (2017), the best class-mean difference direction (Tramer et al., 2017)
and a random direction, all from the same sample, so that their effect at
equal norm and their cost (wall-clock time and model gradient evaluations)
can be compared side by side.
"""

import dataclasses
import time

import numpy as np

from keras_uap.baselines.class_mean import best_class_mean_direction
from keras_uap.baselines.iterative_uap import iterative_uap
from keras_uap.baselines.linf import linf_perturbation
from keras_uap.method import ATTACKS, AttackParams, default_sign_norms, random_unit_vectors, svd_direction

__all__ = ["METHODS", "BuiltPerturbation", "build_universal_perturbations"]

METHODS = ("svd_gradient", "svd_deepfool", "iterative_uap", "class_mean", "random")


@dataclasses.dataclass(frozen=True)
class BuiltPerturbation:
    """One method's universal perturbation and what it cost to build.

    Attributes:
        direction: float32 of one input's shape with unit norm in the method's
            own norm (L2 for `norm="l2"`; L-infinity, entries in [-1, 1], for
            "linf"), so that `eps * direction` has norm `eps`.
        seconds: wall-clock time to build it from the sample (the model
            already loaded and its functions traced).
        gradient_evaluations: backward passes through the model for one
            input each (DeepFool: one per iteration and candidate logit
            difference). Forward passes are not counted.
        details: method-specific facts (the iterative UAP's passes and
            fooling rate on the sample, the class-mean winner, ...).
    """

    direction: np.ndarray
    seconds: float
    gradient_evaluations: int
    details: dict


def _as_unit(v, norm):
    v = np.asarray(v, np.float32)
    if norm == "linf":
        # The L-infinity version of an L2 direction is its sign (the steepest
        # ascent step of that budget along it); a built L-inf UAP keeps its shape.
        return linf_perturbation(v, 1.0)
    length = float(np.linalg.norm(v))
    return (v / length).astype(np.float32) if length > 0 else v


def build_universal_perturbations(model_fn, x, y, *, norm="l2", build_eps=6.0, methods=METHODS, sign_norms=None,
                                  nb_candidate=10, overshoot=0.02, max_iter=50, delta=0.2, max_passes=5,
                                  clip_min=0.0, clip_max=1.0, seed=0):
    """Builds each method's universal perturbation from the sample `(x, y)`.

    - "svd_gradient" / "svd_deepfool": the top right singular vector of the
      unit-normalised loss gradients / DeepFool steps of the sample, its sign
      chosen on the sample over the L2 norms `sign_norms`
      (`keras_uap.method.svd_direction`).
    - "iterative_uap": Algorithm 1 of Moosavi-Dezfooli et al. (2017) in the
      `norm` ball of radius `build_eps`, DeepFool inside (`delta`,
      `max_passes`). It is built for that one radius; the returned direction
      is it rescaled to unit norm, so evaluating it at another norm is an
      approximation in its favour only at `build_eps`.
    - "class_mean": the class-mean difference direction that raises the
      sample's error rate most at L2 norm `build_eps` (no gradients at all).
    - "random": a Gaussian random direction (seed `seed`), the vector
      `keras_uap.method.random_unit_vectors(d, [seed])[0]` itself.

    For `norm="linf"` every direction but the iterative UAP's is the sign of
    its L2 direction (the L-infinity step that best aligns with it).

    Args:
        model_fn: batch -> logits. Pass the same callable across calls, as
            the attacks cache their compiled functions per callable.
        x, y: the sample, (m, ...) float32 in [clip_min, clip_max], int labels.
        norm: "l2" or "linf".
        build_eps: the radius the iterative UAP and the class-mean choice use.
        methods: which of `METHODS` to build.
        sign_norms: the L2 norms over which the SVD-UAP's sign is chosen;
            None: `keras_uap.method.default_sign_norms` of the inputs.

    Returns:
        {method: BuiltPerturbation}, in the order of `methods`.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {METHODS}")
    if norm not in ("l2", "linf"):
        raise ValueError(f"`norm` must be 'l2' or 'linf'. Received: norm={norm!r}")
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int32)
    shape, m = x.shape[1:], len(x)
    l2_norm = build_eps if norm == "l2" else build_eps * float(np.sqrt(np.prod(shape)))
    if sign_norms is None:
        sign_norms = default_sign_norms(shape, clip_min, clip_max)
    params = AttackParams(deepfool_candidates=nb_candidate, deepfool_overshoot=overshoot, deepfool_max_iter=max_iter,
                          clip_min=clip_min, clip_max=clip_max)
    built = {}
    for method in methods:
        start = time.perf_counter()
        details = {}
        if method in ("svd_gradient", "svd_deepfool"):
            out = ATTACKS[method.removeprefix("svd_")].run(model_fn, x, y, params)
            v, _ = svd_direction(np.asarray(out.direction), x, y, model_fn, sign_norms, clip_min, clip_max)
            if out.iterations is None:  # one gradient per input
                evaluations = m
            else:
                evaluations = int(np.sum(out.iterations)) * (nb_candidate - 1)
                details["deepfool_success_rate"] = float(np.mean(out.success))
        elif method == "iterative_uap":
            result = iterative_uap(model_fn, x, eps=build_eps, norm=norm, delta=delta, max_passes=max_passes,
                                   overshoot=overshoot, nb_candidate=nb_candidate, max_iter=max_iter,
                                   clip_min=clip_min, clip_max=clip_max, seed=seed)
            v, evaluations = result.perturbation, result.gradient_evaluations
            built_norm = float(np.max(np.abs(v))) if norm == "linf" else float(np.linalg.norm(v))
            details.update(passes=result.passes, sample_fooling_rate=result.fooling_rate, built_norm=built_norm)
        elif method == "class_mean":
            v, found = best_class_mean_direction(model_fn, x, y, probe_norm=l2_norm, clip_min=clip_min,
                                                 clip_max=clip_max, return_details=True)
            evaluations = 0
            details.update({"class": int(found["class"]), "sign": int(found["sign"])})
        else:
            v = random_unit_vectors(int(np.prod(shape)), [seed])[0]
            evaluations = 0
        if method == "iterative_uap" and norm == "linf":
            direction = np.asarray(v, np.float32) / max(float(np.max(np.abs(v))), 1e-12)
        elif method == "random" and norm == "l2":
            # Already of unit norm, and kept bit for bit the random baseline of the universal
            # curves with this seed (normalising again can move last bits), so that one curve serves both.
            direction = v
        else:
            direction = _as_unit(v, norm)
        built[method] = BuiltPerturbation(direction.reshape(shape).astype(np.float32), time.perf_counter() - start,
                                          int(evaluations), details)
    return built
