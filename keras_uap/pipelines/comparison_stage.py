"""Comparison stage: for one model, every universal-perturbation method built
from the same sample, its cost, and its error curves under L2 and L-infinity.

For each m in `sample_sizes` one seeded sample of m of the attacked test
inputs (the first `limit`) is drawn, as the universal stage draws
its samples, and every method of `keras_uap.baselines.METHODS` builds its
perturbation from it (`build_universal_perturbations`: SVD-UAP from
gradients and DeepFool, the iterative UAP at L2 radius `build_eps`, the
class-mean direction, random). Each is evaluated on all test inputs (or the model's seeded
`eval_subset`) over the L2 grid `eps_grid`. For the L-infinity table, from
the largest sample, every L2 direction's sign (the L-infinity step that best
aligns with it, at no further cost) is set beside the iterative UAP rebuilt
in the L-infinity ball of radius `linf_build_budget`, over `linf_grid`.

The SVD-UAPs evaluated and saved are the universal stage's published
vectors (input `universal`, that stage's output directory for the same
export and test data) where it has one for that attack and m: the one
vector `perturbations/<model>-<attack>-m<m>.npy` names; the cost recorded is
that of rebuilding it from the sample. The random direction of seed `seed`
is the universal stage's random baseline of that seed, the same vector.
Where the universal stage measured those vectors on the same evaluation set
and grid, in batches of the same size, their L2 curves are taken from its `universal.json` and only the
points it did not reach (it stopped at saturation earlier) are predicted,
so the L2 curves are those a full evaluation gives at a fraction of its
forward passes; the random direction's curve, the same at every m, is
predicted once.

Artifacts: `comparison.json` and `perturbations/<method>-m<m>.npy` (unit L2
directions of one input's shape, used by the transfer stage).
"""

import dataclasses
import json
import os

import numpy as np

from keras_uap.baselines.compare import METHODS, build_universal_perturbations
from keras_uap.baselines.linf import linf_perturbation
from keras_uap.method import draw_sample, fooling_curves, interpolate_crossing
from keras_uap.pipelines.data_stage import value_range
from keras_uap.pipelines.directions_stage import attacked_indices
from keras_uap.pipelines.evaluation import load_evaluation_set
from keras_uap.pipelines.code_versions import code_version
from keras_uap.pipelines.runner import Stage

__all__ = ["COMPARISON_STAGE", "DEFAULT_LINF_GRID"]

DEFAULT_LINF_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def _curve(curves, column):
    eps, error, fooling = curves.eps, curves.error_rate[:, column], curves.fooling_rate[:, column]
    return {"eps": [float(e) for e in eps], "error_rate": error.tolist(), "fooling_rate": fooling.tolist(),
            "eps50": interpolate_crossing(eps, error, 0.5), "eps80": interpolate_crossing(eps, error, 0.8)}


def _warm_up(model_fn, x, y, build_eps, clip):
    """Traces the attacks' compiled functions on two inputs, so that the
    recorded build times measure the work and not TensorFlow's tracing."""
    build_universal_perturbations(model_fn, x[:2], y[:2], norm="l2", build_eps=build_eps, max_passes=1, **clip)
    build_universal_perturbations(model_fn, x[:2], y[:2], norm="linf", methods=("iterative_uap",), build_eps=0.1,
                                  max_passes=1, **clip)


def _published(built, universal, model, m):
    """`built` with each SVD-UAP's direction replaced by the universal stage's
    published vector for the same model, attack and m, where there is one:
    the comparison, the transfer and `perturbations/` then measure one vector
    (the rebuilt one keeps its cost; on the same inputs it differs from the
    published one by float rounding only). Also returns the methods swapped."""
    swapped = []
    for method in ("svd_gradient", "svd_deepfool"):
        path = (os.path.join(universal, "perturbations", f"{model}-{method.removeprefix('svd_')}-m{m}.npy")
                if universal else None)
        if method in built and path and os.path.isfile(path):
            built[method] = dataclasses.replace(built[method], direction=np.load(path))
            swapped.append(method)
    return built, swapped


def _universal_curves(universal, eval_subset, seed, eps_grid, batch_size):
    """The universal stage's `universal.json` if it measured its curves on
    this stage's evaluation set and grid, in batches of this stage's
    `batch_size` (a setting, outside both stages' keys: a batch's size can
    change the last bits of its logits, and so a label), else None."""
    path = os.path.join(universal, "universal.json") if universal else None
    if not path or not os.path.isfile(path):
        return None
    with open(path) as f:
        found = json.load(f)
    measured = (found.get("eval_subset", -1), found.get("seed"), found.get("eps_grid"), found.get("batch_size"))
    return found if measured == (eval_subset, seed, list(eps_grid), batch_size) else None


def _known_curves(measured, methods, swapped, m, seed):
    """{column: (error rates, fooling rates)} of the L2 curves already
    measured: the universal stage's published SVD-UAPs at m (its run seed's
    curve, `per_seed[0]`) and random direction of `seed`, then the random
    curve this stage measured at an earlier m (in `measured["random"]`)."""
    known = {}
    universal = measured.get("universal")
    for column, method in enumerate(methods):
        if universal and method in swapped:
            curve = universal["curves"][method.removeprefix("svd_")][str(m)]["per_seed"][0]
            known[column] = (curve["error_rate"], curve["fooling_rate"])
        elif method == "random" and "random" in measured:
            known[column] = measured["random"]
        elif method == "random" and universal and seed in universal["random"]["seeds"]:
            curve = universal["random"]["per_seed"][universal["random"]["seeds"].index(seed)]
            known[column] = (curve["error_rate"], curve["fooling_rate"])
    return known


def _comparison_stage(output_dir, model_file, test_data, model, sample_sizes, eps_grid, linf_grid, build_eps,
                      linf_build_budget, max_passes, delta, saturation, eval_subset, limit, seed,
                      universal=None, batch_size=5000, strategy=None, progress=None):
    with np.load(test_data, allow_pickle=False) as f:
        x, y = f["x"], f["y"].astype(np.int32)
        clip = dict(zip(("clip_min", "clip_max"), value_range(f)))
    # The samples come from the attacked inputs, as the universal stage's do.
    pool = attacked_indices(len(x), limit)
    evaluation = load_evaluation_set(model_file, x, y, eval_subset, seed, batch_size, strategy)
    model_fn, x_eval, y_eval = evaluation.logits_fn, evaluation.x, evaluation.y
    predict_fn, clean = evaluation.predict_fn, evaluation.clean
    _warm_up(model_fn, x, y, build_eps, clip)
    os.makedirs(os.path.join(output_dir, "perturbations"))

    l2, linf = {method: {} for method in METHODS}, {method: {} for method in METHODS}
    measured = {"universal": _universal_curves(universal, eval_subset, seed, eps_grid, batch_size)}
    steps = len(sample_sizes) + 1
    for step, m in enumerate(sorted(int(m) for m in sample_sizes)):
        pick = pool[draw_sample(len(pool), m, seed)]
        built = build_universal_perturbations(model_fn, x[pick], y[pick], norm="l2", build_eps=build_eps,
                                              sign_norms=eps_grid, max_passes=max_passes, delta=delta, seed=seed,
                                              **clip)
        built, swapped = _published(built, universal, model, m)
        curves = fooling_curves(predict_fn, x_eval, y_eval, [b.direction for b in built.values()], (0.0, *eps_grid),
                                clean=clean, batch_size=batch_size, saturation=saturation,
                                known=_known_curves(measured, list(built), swapped, m, seed), **clip)
        for column, (method, b) in enumerate(built.items()):
            if method == "random":
                measured["random"] = (curves.error_rate[:, column], curves.fooling_rate[:, column])
            l2[method][str(m)] = {**_curve(curves, column), "sample_size": m,
                                  "seconds": b.seconds, "gradient_evaluations": b.gradient_evaluations,
                                  **b.details}
            np.save(os.path.join(output_dir, "perturbations", f"{method}-m{m}.npy"), b.direction)
        if progress:
            progress(step + 1, steps)

    # `built` is now the largest sample's: only the iterative UAP depends on the norm.
    built.update(build_universal_perturbations(model_fn, x[pick], y[pick], norm="linf", methods=("iterative_uap",),
                                               build_eps=linf_build_budget, max_passes=max_passes, delta=delta,
                                               seed=seed, **clip))
    built = {method: built[method] for method in METHODS}
    vectors = np.stack([b.direction.reshape(-1) if method == "iterative_uap"
                        else linf_perturbation(b.direction.reshape(-1), 1.0) for method, b in built.items()])
    curves = fooling_curves(predict_fn, x_eval, y_eval, vectors, (0.0, *linf_grid), clean=clean,
                            batch_size=batch_size, saturation=saturation, **clip)
    for column, (method, b) in enumerate(built.items()):
        curve = _curve(curves, column)
        curve["budget"] = curve.pop("eps")
        linf[method][str(m)] = {**curve, "sample_size": m, "seconds": b.seconds,
                                "gradient_evaluations": b.gradient_evaluations, **b.details}
    if progress:
        progress(steps, steps)

    result = {"model": model, "n_test": int(len(x)), "n_eval": int(len(x_eval)),
              "clean_error_rate": evaluation.clean_error_rate, "build_eps": build_eps,
              "linf_build_budget": linf_build_budget, "max_passes": max_passes, "delta": delta,
              "l2": l2, "linf": linf}
    with open(os.path.join(output_dir, "comparison.json"), "w") as f:
        json.dump(result, f)
    return {method: {m: c["eps80"] for m, c in by_m.items()} for method, by_m in l2.items()}


COMPARISON_STAGE = Stage(
    name="comparison",
    fn=_comparison_stage,
    version=code_version("2", __name__),
    inputs=("model_file", "test_data", "universal"),
    params=("model", "sample_sizes", "eps_grid", "linf_grid", "build_eps", "linf_build_budget", "max_passes",
            "delta", "saturation", "eval_subset", "limit", "seed"),
    settings=("batch_size", "strategy", "progress"),
)
