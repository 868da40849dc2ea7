"""Builds the report: `metrics.json`, `report.md` with its figures, and TensorBoard summaries.

`build_report` is the entry point. It first gathers every measured number into
one plain-JSON `metrics` dict (`build_metrics`), then checks the paper's claims
against it (`claims.evaluate_claims`), and only then draws figures and writes
text, so that everything the report says can be traced to a key of
`metrics.json`. Every wall-clock number sits under its `timings` key, so that
the rest of `metrics.json` is the same for two runs with the same seed.
"""

import json
import math
import os

import numpy as np

from keras_uap.report import claims, figures, seeds, tables
from keras_uap.report.comparison import comparison_figure, comparison_markdown, comparison_metrics
from keras_uap.report.tables import ATTACK_ORDER, MODEL_ORDER
from keras_uap.report.tensorboard import write_tensorboard

__all__ = ["REQUIRED_METRIC_KEYS", "build_metrics", "measured_metrics", "build_report", "missing_metric_keys",
           "plain_json", "spectrum_entry"]

# Keys that downstream checks rely on; `{m}` stands for every sample size present
# (or asked for) and `{stage}` for every stage timed. Null values count as present.
REQUIRED_METRIC_KEYS = (
    "models.{model}.test_accuracy", "models.{model}.export_path", "data.test_path",
    "spectrum.{model}.{attack}.top5_fraction", "spectrum.{model}.{attack}.singular_values",
    "invariant.{model}.{attack}.avg_abs_dot_top5", "invariant.{model}.{attack}.avg_abs_dot_top10",
    "invariant.{model}.{attack}.principal_angles_deg",
    "universal.{model}.{attack}.{m}.eps", "universal.{model}.{attack}.{m}.error_rate",
    "universal.{model}.{attack}.{m}.fooling_rate", "universal.{model}.{attack}.{m}.eps50",
    "universal.{model}.{attack}.{m}.eps80",
    "universal.{model}.random.eps", "universal.{model}.random.error_rate", "universal.{model}.random.fooling_rate",
    "universal.{model}.random.eps50", "universal.{model}.random.eps80",
    "theory.{model}.{attack}.top_eigenvalue", "theory.{model}.{attack}.theorem1",
    "theory.{model}.{attack}.theorem1_held_out", "theory.{model}.{attack}.theorem2",
    "claims.counted", "claims.sanity", "timings.stages.{stage}",
)
# Shapes checked beyond presence: last key part -> (length of the list, length of each row); None = any.
_SHAPES = {"principal_angles_deg": (5, None), "theorem1": (None, 3)}


def plain_json(value):
    """`value` with NumPy scalars/arrays as Python numbers/lists and NaN/inf as None."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain_json(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _ordered(keys, order):
    keys = set(keys)
    return [k for k in order if k in keys] + sorted(keys - set(order))


def _top_fraction(singular_values, k):
    """Fraction of sum(σ²) in the k largest σ (None if there is no spectrum)."""
    s = np.sort(np.asarray([v for v in singular_values or [] if v is not None], float))[::-1]
    total = float(np.sum(s ** 2))
    return float(np.sum(s[:k] ** 2) / total) if total > 0 else None


def _constant_cosine(vector):
    """|cos| between an image and the constant image: how flat a singular vector is (sign-free)."""
    v = np.asarray(vector, float).ravel()
    norm = float(np.linalg.norm(v))
    return abs(float(v.sum())) / (math.sqrt(v.size) * norm) if norm > 0 else None


def _error_rate_at(curve, eps):
    """Error rate at norm `eps`, linearly interpolated on the curve's grid; None outside it."""
    grid = np.asarray(curve.get("eps") or [], float)
    rate = np.asarray([np.nan if v is None else v for v in curve.get("error_rate") or []], float)
    if grid.size == 0 or grid.size != rate.size or not grid.min() <= eps <= grid.max():
        return None
    order = np.argsort(grid)
    return float(np.interp(eps, grid[order], rate[order]))


def spectrum_entry(entry, vectors=None):
    """A spectrum's metrics from the analysis stage's entry (`singular_values`,
    `singular_values_sample`, `fractions`): both spectra, the top-1/5/10
    fractions of each and, with its top singular `vectors`, how flat the
    first is (`top_vector_constant_cosine`)."""
    out = {"singular_values": entry.get("singular_values", []),
           "singular_values_sample": entry.get("singular_values_sample", [])}
    fractions = entry.get("fractions", {})
    for k in (1, 5, 10):
        # The stage's fractions are the contract; recompute only if it left one out.
        out[f"top{k}_fraction"] = fractions.get(str(k), _top_fraction(out["singular_values"], k))
        out[f"top{k}_fraction_sample"] = _top_fraction(out["singular_values_sample"], k)
    if vectors is not None:
        out["top_vector_constant_cosine"] = _constant_cosine(vectors[0])
    return out


def _history_summary(history):
    val = [v for v in (history or {}).get("val_accuracy", []) if v is not None]
    return {"epochs": len((history or {}).get("loss", [])), "best_val_accuracy": max(val) if val else None}


def build_metrics(analysis, top_vectors, universal, models_info, data_info, timings, reference_eps=12.0):
    """Gathers every measured number of the study into one plain-JSON dict.

    Args and the layout of the result are those of `build_report`; `reference_eps`
    is the L2 norm at which FGSM and clipped FGSM are compared.
    """
    models = _ordered(set(analysis) | set(universal) | set(models_info), MODEL_ORDER)
    metrics = {"models": {}, "data": {"test_path": data_info.get("test_path"), "n_test": data_info.get("n_test")},
               "spectrum": {}, "invariant_spectrum": {}, "invariant": {}, "universal": {}, "theory": {},
               "fgsm_clipping": {"reference_eps": reference_eps, "models": {}},
               "timings": {"stages": dict(timings)}}
    for model in models:
        info, a, u = models_info.get(model, {}), analysis.get(model, {}), universal.get(model, {})
        vectors = top_vectors.get(model, {})
        metrics["models"][model] = {
            "test_accuracy": info.get("test_accuracy"), "export_path": info.get("export_path"),
            "clean_error_rate": u.get("clean_error_rate"), "n_test": u.get("n_test"),
            "universal_n_eval": u.get("n_eval", u.get("n_test")),
            "directions_n": {k: a["spectrum"][k].get("n", a.get("n"))
                             for k in _ordered(a.get("spectrum", {}), ATTACK_ORDER)},
            "analysis_n": a.get("n"), "analysis_sample_size": a.get("sample_size"),
            "invariant_angle_deg": a.get("invariant_angle_deg"),
            **_history_summary(info.get("history"))}
        spectrum = a.get("spectrum", {})
        if spectrum:
            metrics["spectrum"][model] = {k: spectrum_entry(spectrum[k], vectors.get(k))
                                          for k in _ordered(spectrum, ATTACK_ORDER)}
        if "invariant" in a:
            metrics["invariant_spectrum"][model] = spectrum_entry(a["invariant"], vectors.get("invariant"))
        if a.get("comparison"):
            metrics["invariant"][model] = {k: dict(a["comparison"][k]) for k in _ordered(a["comparison"], ATTACK_ORDER)}
        if a.get("theory"):
            metrics["theory"][model] = {k: dict(a["theory"][k]) for k in _ordered(a["theory"], ATTACK_ORDER)}
        curves = u.get("curves", {})
        if curves or "random" in u:
            entry = {k: {m: dict(curves[k][m]) for m in sorted(curves[k], key=int)}
                     for k in _ordered(curves, ATTACK_ORDER)}
            if "random" in u:
                entry["random"] = dict(u["random"])
            metrics["universal"][model] = entry
        clipping = {}
        for attack in ("fgsm", "fgsm_clipped"):
            if curves.get(attack):
                m = max(curves[attack], key=int)  # the direction from the most inputs
                c = curves[attack][m]
                clipping[attack] = {"m": m, "error_rate_at_reference": _error_rate_at(c, reference_eps),
                                    "eps50": c.get("eps50"), "eps80": c.get("eps80"),
                                    "top_vector_constant_cosine": metrics["spectrum"].get(model, {}).get(
                                        attack, {}).get("top_vector_constant_cosine")}
        if clipping:
            metrics["fgsm_clipping"]["models"][model] = clipping
    metrics["paper"] = {"principal_angles_deg": {k: list(v) for k, v in tables.PAPER_PRINCIPAL_ANGLES_DEG.items()},
                        "published_mnist_rot_error": {k: {"error": e, "source": src}
                                                      for k, (e, src) in tables.PUBLISHED_MNIST_ROT_ERROR.items()}}
    return plain_json(metrics)


def _lookup(metrics, dotted):
    node = metrics
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _expand(template, metrics, model, attack, ms, stages):
    """The concrete keys one template stands for ("<m>"/"<stage>" when there are none)."""
    if "{m}" in template:
        found, node = _lookup(metrics, f"universal.{model}.{attack}")
        values = list(ms) if ms is not None else list(node) if found and isinstance(node, dict) else []
        return [template.format(model=model, attack=attack, m=m) for m in values or ["<m>"]]
    if "{stage}" in template:
        found, node = _lookup(metrics, "timings.stages")
        values = list(stages) if stages is not None else list(node) if found and isinstance(node, dict) else []
        return [template.format(stage=s) for s in values or ["<stage>"]]
    return [template.format(model=model, attack=attack)]


def _shape_problem(key, value):
    length, row = _SHAPES.get(key.rsplit(".", 1)[-1], (None, None))
    if length is not None and not (isinstance(value, list) and len(value) == length):
        return f"{key} (expected {length} numbers)"
    if row is not None and not (isinstance(value, list) and all(isinstance(r, list) and len(r) == row for r in value)):
        return f"{key} (expected rows of {row})"
    return None


def missing_metric_keys(metrics, models, attacks, ms=None, stages=None):
    """Required keys (see `REQUIRED_METRIC_KEYS`) that `metrics` lacks or holds in the wrong shape.

    Args:
        metrics: the dict `build_report` returns (or `metrics.json` loaded).
        models, attacks: which models and attacks must be covered.
        ms: sample sizes (strings) every universal curve must have; None means
            those present, of which there must be at least one.
        stages: stage names `timings.stages` must have; None means at least one.

    Returns:
        Dotted keys, sorted; a wrong shape is reported as "<key> (expected ...)".
    """
    problems = set()
    for template in REQUIRED_METRIC_KEYS:
        for model in models:
            for attack in (attacks if "{attack}" in template else [None]):
                for key in _expand(template, metrics, model, attack, ms, stages):
                    found, value = _lookup(metrics, key)
                    problem = key if not found or "<" in key else _shape_problem(key, value)
                    if problem:
                        problems.add(problem)
    return sorted(problems)


def measured_metrics(analysis, top_vectors, universal, models_info, data_info, timings, reference_eps=12.0,
                     comparison=None, transfer=None):
    """Every measured number of one set of models (`build_metrics`, with the
    comparison's and transfer's sections when given), before any claim is
    judged. Arguments as in `build_report`."""
    metrics = build_metrics(analysis, top_vectors, universal, models_info, data_info, timings, reference_eps)
    if comparison:
        beyond_metrics = plain_json(comparison_metrics(comparison, transfer))
        metrics["timings"].update(beyond_metrics.pop("timings"))
        metrics.update(beyond_metrics)
    return metrics


def build_report(output_dir, analysis, top_vectors, universal, models_info, data_info, timings, tensorboard_dir,
                 *, reference_eps=12.0, comparison=None, transfer=None, training_seed=None, other_seeds=None):
    """Writes `report.md`, `figures/*.png`, `metrics.json` and TensorBoard summaries.

    Args:
        output_dir: where `report.md`, `metrics.json` and `figures/` go (created).
        analysis: model -> the dict of `analysis/<model>/analysis.json`.
        top_vectors: model -> {attack or "invariant": (10, H, W) or (10, H, W, C) top singular vectors}.
        universal: model -> the dict of `universal/<model>/universal.json`.
        models_info: model -> {"test_accuracy", "export_path", "history"}.
        data_info: {"test_path", "n_test"}.
        timings: stage name -> seconds.
        tensorboard_dir: root of the TensorBoard event directories.
        reference_eps: L2 norm at which FGSM and clipped FGSM are compared.
        comparison: model -> the dict of `comparison/<model>/comparison.json`
            (SVD-UAP against the baselines), or None.
        transfer: the dict of `transfer/transfer.json`, or None.
        training_seed, other_seeds: with models trained with more than one
            seed, the seed of the models above and {seed: `measured_metrics`
            of the models trained with it} for the others: they add the
            `seeds` section and each counted claim's verdict per seed
            (`claims.SEEDS_DISAGREE` where they differ).

    Returns:
        The metrics dict, as written to `metrics.json`: sections `models`, `data`,
        `spectrum`, `invariant_spectrum`, `invariant`, `universal`, `theory`,
        `fgsm_clipping`, `paper`, `claims` (see `claims.evaluate_claims`) and
        `timings` (`stages`: seconds per stage; with `comparison`, also the
        build seconds and time ratios of the comparison); with `comparison`,
        also `comparison`, `linf`, `cost_verdict`, `comparison_settings` and
        (with `transfer`) `transfer`; with `other_seeds`, also `seeds`
        (`seeds.seeds_section`).
    """
    if other_seeds and (training_seed is None or training_seed in other_seeds):
        raise ValueError(f"`other_seeds` needs this report's own `training_seed`, not among them. Received: "
                         f"training_seed={training_seed!r}, other_seeds={sorted(other_seeds)}")
    os.makedirs(output_dir, exist_ok=True)
    metrics = measured_metrics(analysis, top_vectors, universal, models_info, data_info, timings, reference_eps,
                               comparison, transfer)
    by_seed = {training_seed: metrics, **other_seeds} if other_seeds else None
    metrics["claims"] = claims.evaluate_claims(metrics, by_seed)
    if by_seed:
        metrics["seeds"] = seeds.seeds_section(by_seed)
    reading = claims.reading_markdown(metrics["claims"])
    figure_paths = figures.draw_all(os.path.join(output_dir, "figures"), metrics, top_vectors, models_info)
    markdown_tables = tables.all_tables(metrics)
    if by_seed:
        markdown_tables["seeds"] = seeds.seeds_markdown(metrics["seeds"])
    beyond = []
    if comparison:
        figure_paths["comparison"] = comparison_figure(os.path.join(output_dir, "figures", "comparison_l2.png"),
                                                       metrics)
        beyond = comparison_markdown(metrics, "figures/comparison_l2.png")
        markdown_tables["comparison"] = "\n".join(beyond)
    with open(os.path.join(output_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write(tables.report_markdown(metrics, markdown_tables, reading, figure_paths, output_dir))
        if beyond:
            f.write("\n" + "\n".join(beyond) + "\n")
    with open(os.path.join(output_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1, allow_nan=False)
    write_tensorboard(tensorboard_dir, figure_paths, markdown_tables, reading)
    return metrics

