"""Analysis stage: spectra, invariant directions, subspace comparison and the
Section 5 theory checks for one model.

Inputs: the directions artifacts of every attack (`directions_<attack>`) and
the test set. Artifacts: `analysis.json` (its keys: docs/pipeline.md,
`metrics.json`) and `top_vectors.npz` (arrays `<attack>`, `invariant`,
`<attack>_sample`, `invariant_sample`, each (10, H, W), or (10, H, W, C)
for several channels: top right singular vectors).

The invariant directions (and their comparison with the attacks') are the
paper's: they presume a rotation-invariant task. With `invariant_angle`
None (`keras-uap study` on the user's model) the stage computes the spectra
and theory checks alone, which hold for any model; `analysis.json` then
has `invariant` None and an empty `comparison`.
"""

import json
import os

import numpy as np

from keras_uap.analysis import (
    avg_abs_dot,
    invariant_directions,
    max_abs_dot,
    nonvacuous_sample_size,
    principal_angles_deg,
    sample_vector_distances,
    singular_spectrum,
    spectrum_fractions,
    theorem1_held_out,
    theorem1_rows,
    theorem2_rows,
)
from keras_uap.method import ATTACK_NAMES, draw_sample
from keras_uap.pipelines.data_stage import value_range
from keras_uap.pipelines.directions_stage import load_directions
from keras_uap.pipelines.code_versions import code_version
from keras_uap.pipelines.runner import Stage

__all__ = ["ANALYSIS_STAGE", "analyse_model"]

_TOP = 10


def _spectrum(directions, sample):
    s, vectors = singular_spectrum(directions, top=_TOP)
    s_sample, vectors_sample = singular_spectrum(directions[sample], top=_TOP)
    summary = {"singular_values": s.tolist(), "singular_values_sample": s_sample.tolist(),
               "fractions": spectrum_fractions(s)}
    return summary, vectors, vectors_sample


def _subspace_comparison(top, top_sample, inv_top, inv_top_sample):
    """How close an attack's top singular vectors lie to the invariant directions'."""
    return {
        "avg_abs_dot_top5": avg_abs_dot(top, inv_top, 5),
        "avg_abs_dot_top10": avg_abs_dot(top, inv_top, 10),
        "avg_abs_dot_top5_sample": avg_abs_dot(top_sample, inv_top_sample, 5),
        "avg_abs_dot_top10_sample": avg_abs_dot(top_sample, inv_top_sample, 10),
        "max_abs_dot_top5": max_abs_dot(top, inv_top, 5),
        "max_abs_dot_top5_sample": max_abs_dot(top_sample, inv_top_sample, 5),
        "principal_angles_deg": principal_angles_deg(top, inv_top, 5),
        "principal_angles_deg_sample": principal_angles_deg(top_sample, inv_top_sample, 5),
    }


def analyse_model(attack_directions, x_test, sample_size=500, seed=0, invariant_angle=2.0, attack_indices=None,
                  clip_min=0.0, clip_max=1.0):
    """Runs every analysis of the paper's Sections 3 and 5 on one model.

    Args:
        attack_directions: {attack: (N_a, d) raw directions}.
        x_test: the rotated test images.
        sample_size: the small random sample (the paper's 500), drawn per attack
            from its own rows.
        seed: seed of that sample.
        invariant_angle: degrees of the small rotation; None: no invariant
            directions (nor their comparison with the attacks').
        attack_indices: {attack: (N_a,) test indices of the rows}; by default
            the first N_a test inputs. An attack run on a subset is compared
            with the invariant directions of the same inputs.
        clip_min, clip_max: the range of `x_test` (the rotations stay in it).

    Returns:
        (analysis dict, {name: (10, d) top singular vectors}).
    """
    attack_indices = attack_indices or {}
    indices = {a: np.asarray(attack_indices.get(a, np.arange(len(d)))) for a, d in attack_directions.items()}
    covered = np.unique(np.concatenate(list(indices.values())))
    n = len(covered)
    sample = draw_sample(n, sample_size, seed)
    result = {"n": n, "sample_size": len(sample), "invariant_angle_deg": invariant_angle,
              "spectrum": {}, "invariant": None, "comparison": {}, "theory": {}}
    vectors = {}
    if invariant_angle is not None:
        invariant = invariant_directions(x_test[covered], invariant_angle, clip_min, clip_max)
        result["invariant"], inv_vectors, inv_vectors_sample = _spectrum(invariant, sample)
        vectors.update(invariant=inv_vectors, invariant_sample=inv_vectors_sample)
    for attack, directions in attack_directions.items():
        n_attack = len(directions)
        attack_sample = draw_sample(n_attack, sample_size, seed)
        summary, top, top_sample = _spectrum(directions, attack_sample)
        summary["n"], summary["sample_size"] = n_attack, len(attack_sample)
        result["spectrum"][attack] = summary
        vectors[attack], vectors[f"{attack}_sample"] = top, top_sample
        if invariant_angle is not None:
            if n_attack == n:
                inv_top, inv_top_sample = inv_vectors, inv_vectors_sample
            else:  # the invariant directions of the attacked inputs only
                rows = invariant[np.searchsorted(covered, indices[attack])]
                _, inv_top, inv_top_sample = _spectrum(rows, attack_sample)
            result["comparison"][attack] = _subspace_comparison(top, top_sample, inv_top, inv_top_sample)
        s = np.asarray(summary["singular_values"])
        eigenvalues = np.square(s) / n_attack  # eigenvalues of M = E[a a^T / |a|^2]
        sizes = tuple(m for m in (100, 500, 1000, 5000) if m < n_attack)
        theorem2 = theorem2_rows(directions, sizes, seed)
        result["theory"][attack] = {
            "top_eigenvalue": float(eigenvalues[0]),
            "second_eigenvalue": float(eigenvalues[1]),
            "eigengap": float(eigenvalues[0] - eigenvalues[1]),
            "theorem1": theorem1_rows(directions, top[0], float(eigenvalues[0])),  # in sample: a sanity check
            "theorem1_held_out": theorem1_held_out(directions, seed),
            "sample_distances": sample_vector_distances(directions, top[0], sizes=sizes),
            "theorem2": theorem2,
            "theorem2_nonvacuous_m": nonvacuous_sample_size(theorem2),
        }
    return result, vectors


def _analysis_stage(output_dir, test_data, model, sample_size, seed, invariant_angle, **directions_dirs):
    attack_directions, attack_indices = {}, {}
    for attack in ATTACK_NAMES:
        path = directions_dirs.get(f"directions_{attack}")
        if path:
            found = load_directions(os.path.dirname(path))
            attack_directions[attack], attack_indices[attack] = found["directions"], found["index"]
    with np.load(test_data, allow_pickle=False) as f:
        x_test, (clip_min, clip_max) = f["x"], value_range(f)
    result, vectors = analyse_model(attack_directions, x_test, sample_size, seed, invariant_angle, attack_indices,
                                    clip_min, clip_max)
    result["model"] = model
    with open(os.path.join(output_dir, "analysis.json"), "w") as f:
        json.dump(result, f)
    # One image per vector: (H, W) for one channel (as the figures and TensorBoard show it), else (H, W, C).
    shape = x_test.shape[1:-1] if x_test.shape[-1] == 1 else x_test.shape[1:]
    np.savez(os.path.join(output_dir, "top_vectors.npz"),
             **{k: v.reshape(len(v), *shape).astype(np.float32) for k, v in vectors.items()})
    return {"model": model, "n": result["n"],
            "top5_fraction": {a: result["spectrum"][a]["fractions"]["5"] for a in attack_directions}}


ANALYSIS_STAGE = Stage(
    name="analysis",
    fn=_analysis_stage,
    version=code_version("1", __name__),
    inputs=("test_data",) + tuple(f"directions_{a}" for a in ATTACK_NAMES),
    params=("model", "sample_size", "seed", "invariant_angle"),
)
