"""Universal-attack stage: for one model, the top singular vector of m attack
directions used as a single perturbation of every test input.

For m in `sample_sizes` (the full set included) and each attack, m directions
are drawn (`seed`, then the other `seeds` when m is smaller than the full
set), the top right singular vector's sign is chosen on the sample alone
over the L2 grid (`keras_uap.method.choose_sign`),
and error and fooling rates are measured on all test inputs (or a seeded random `eval_subset` of
them, for models whose forward pass is too slow for hundreds of passes over
the full set) over a grid of L2 norms. Random unit directions give the
baseline.

Two additions are off unless asked for (run-all leaves them off; the user
study switches them on): with `spectrum_top`, each curve records the top
singular values of the m directions its published vector was built from
(`singular_values`), so that a reader sees the spectrum change with m; with
`linf_grid`, each published vector's L-infinity step (its sign,
`keras_uap.baselines.linf_perturbation`) and the random directions' are
measured over those budgets too.

Artifacts: `universal.json` (curves and eps50/eps80 per attack and m, the
full set's with the rejected sign's curve beside it as `other_sign`, the
random baseline, and with `linf_grid` a `linf` section laid out the same
way, its `eps` the L-infinity budgets) and
`perturbations/<model>-<attack>-m<m>.npy` unit vectors of one input's
shape, sign chosen: `keras_uap.method.universal_perturbation` of the
attacked inputs with `seed`, i.e. what
`keras_uap.svd_universal_perturbation(model, x[index], y[index], attack,
sample_size=m, seed=seed)` returns for the directions artifact's `index`.
"""

import json
import os

import numpy as np

from keras_uap.baselines.linf import linf_perturbation
from keras_uap.method import (
    ATTACK_NAMES,
    fooling_curves,
    interpolate_crossing,
    random_unit_vectors,
    universal_perturbation,
)
from keras_uap.pipelines.data_stage import value_range
from keras_uap.pipelines.directions_stage import load_directions
from keras_uap.pipelines.evaluation import load_evaluation_set
from keras_uap.pipelines.code_versions import code_version
from keras_uap.pipelines.runner import Stage

__all__ = ["UNIVERSAL_STAGE"]


def _summarise(eps, errors, foolings, random=None):
    """Mean curves over seeds, per-seed curves, and the 50%/80% crossings."""
    mean_error, mean_fooling = errors.mean(axis=1), foolings.mean(axis=1)
    summary = {
        "eps": [float(e) for e in eps],
        "error_rate": mean_error.tolist(),
        "fooling_rate": mean_fooling.tolist(),
        "eps50": interpolate_crossing(eps, mean_error, 0.5),
        "eps80": interpolate_crossing(eps, mean_error, 0.8),
        "fooling_eps50": interpolate_crossing(eps, mean_fooling, 0.5),
        "fooling_eps80": interpolate_crossing(eps, mean_fooling, 0.8),
        "per_seed": [
            {"error_rate": errors[:, i].tolist(), "fooling_rate": foolings[:, i].tolist(),
             "eps50": interpolate_crossing(eps, errors[:, i], 0.5),
             "eps80": interpolate_crossing(eps, errors[:, i], 0.8)}
            for i in range(errors.shape[1])
        ],
    }
    if random is not None:
        for key in ("eps50", "eps80"):
            ours, base = summary[key], random[key]
            # A model already wrong on half the clean inputs has eps50 = 0: no ratio.
            summary[f"ratio_{key}_to_random"] = None if ours is None or not base else ours / base
    return summary


def _linf_section(curves_of, published, random_vectors, random_seeds, budgets):
    """The `linf` section: the L-infinity curves of each published vector's
    sign (the L-infinity step that best aligns with it) and of the random
    directions' signs, measured together over `budgets`."""
    signs = [linf_perturbation(v, 1.0) for v in (*published.values(), *random_vectors)]
    eps, errors, foolings = curves_of(signs, (0.0, *budgets))
    k = len(published)
    random = _summarise(eps, errors[:, k:], foolings[:, k:])
    random["seeds"] = list(random_seeds)
    curves = {}
    for column, (attack, m) in enumerate(published):
        summary = _summarise(eps, errors[:, column:column + 1], foolings[:, column:column + 1], random)
        del summary["per_seed"]  # one vector: the published one
        curves.setdefault(attack, {})[m] = summary
    return {"budgets": list(budgets), "curves": curves, "random": random}


def _universal_stage(output_dir, model_file, test_data, model, sample_sizes, seeds, random_seeds, eps_grid, saturation,
                     full_set_only, eval_subset, linf_grid, spectrum_top, seed, batch_size=5000, strategy=None,
                     progress=None, **directions_files):
    with np.load(test_data, allow_pickle=False) as f:
        x, y = f["x"], f["y"].astype(np.int32)
        clip = value_range(f)
    evaluation = load_evaluation_set(model_file, x, y, eval_subset, seed, batch_size, strategy)
    logits_fn, x_eval, y_eval = evaluation.logits_fn, evaluation.x, evaluation.y
    predict_fn, clean = evaluation.predict_fn, evaluation.clean
    os.makedirs(os.path.join(output_dir, "perturbations"))
    d = int(np.prod(x.shape[1:]))

    def curves_of(vectors, norms=(0.0, *eps_grid)):
        found = fooling_curves(predict_fn, x_eval, y_eval, vectors, norms, clean=clean, clip_min=clip[0],
                               clip_max=clip[1], batch_size=batch_size, saturation=saturation)
        return found.eps, found.error_rate, found.fooling_rate

    random_vectors = random_unit_vectors(d, random_seeds)
    random = _summarise(*curves_of(random_vectors))
    random["seeds"] = list(random_seeds)
    curves, n_directions, published = {}, {}, {}
    attacks = [a for a in ATTACK_NAMES if f"directions_{a}" in directions_files]
    for step, attack in enumerate(attacks):
        found = load_directions(os.path.dirname(directions_files[f"directions_{attack}"]))
        directions, index = found["directions"], found["index"]
        x_attacked, y_attacked = x[index], y[index]
        n = len(directions)
        curves[attack] = {}
        n_directions[attack] = n
        sizes = [n] if attack in full_set_only else sample_sizes
        for m in sorted({min(int(m), n) for m in sizes}):
            # The run's seed first: its vector is the one published (and the
            # comparison's and the API's); further seeds only add curves.
            run_seeds = [seed] if m == n else list(dict.fromkeys([seed, *seeds]))
            built = [universal_perturbation(x_attacked, y_attacked, directions.__getitem__, logits_fn, m, seed,
                                            eps_grid, *clip, attack=attack) for seed in run_seeds]
            vectors = [b.perturbation for b in built]
            if m == n:
                # The sign the rule rejected, measured beside the kept one so a
                # reader sees what the choice changes.
                eps, errors, foolings = curves_of([vectors[0], -vectors[0]])
                summary = _summarise(eps, errors[:, :1], foolings[:, :1], random)
                summary["other_sign"] = _summarise(eps, errors[:, 1:], foolings[:, 1:], random)
                del summary["other_sign"]["per_seed"]
            else:
                summary = _summarise(*curves_of(vectors), random)
            summary["seeds"] = run_seeds
            summary["sample_size"] = m
            if spectrum_top:
                summary["singular_values"] = built[0].singular_values[:spectrum_top].tolist()
            curves[attack][str(m)] = summary
            published[(attack, str(m))] = vectors[0]
            np.save(os.path.join(output_dir, "perturbations", f"{model}-{attack}-m{m}.npy"), vectors[0])
        if progress:
            progress(step + 1, len(attacks))
    # `eval_subset` and `seed` name the evaluated inputs, and `batch_size` the batches they were predicted
    # in (a batch's size can change the last bits of its logits), so that the comparison can tell whether
    # these curves are the ones it would measure itself.
    result = {"model": model, "n_test": int(len(x)), "n_eval": int(len(x_eval)), "eval_subset": eval_subset,
              "seed": seed, "batch_size": int(batch_size), "n_directions": n_directions,
              "clean_error_rate": evaluation.clean_error_rate,
              "eps_grid": list(eps_grid), "saturation": saturation, "curves": curves, "random": random}
    if linf_grid:
        result["linf"] = _linf_section(curves_of, published, random_vectors, random_seeds, linf_grid)
    with open(os.path.join(output_dir, "universal.json"), "w") as f:
        json.dump(result, f)
    return {a: {m: c["eps50"] for m, c in by_m.items()} for a, by_m in curves.items()}


UNIVERSAL_STAGE = Stage(
    name="universal",
    fn=_universal_stage,
    version=code_version("2", __name__),
    inputs=("model_file", "test_data") + tuple(f"directions_{a}" for a in ATTACK_NAMES),
    params=("model", "sample_sizes", "seeds", "random_seeds", "eps_grid", "saturation",
            "full_set_only", "eval_subset", "linf_grid", "spectrum_top", "seed"),
    settings=("batch_size", "strategy", "progress"),
)
