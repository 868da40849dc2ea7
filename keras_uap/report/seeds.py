"""What varies with the training seed: the report's `seeds` section.

With `run-all --training-seeds`, every model is trained (and attacked,
analysed and evaluated) once per training seed, on the same attacked inputs,
samples and evaluation inputs (the run seed's), so that what differs between
the seeds is the trained model alone. `seeds_section` reads each seed's
headline numbers from its metrics (`build.measured_metrics`) and gives their
values, mean, min and max per model; `seeds_markdown` is its table in
`report.md`. A claim whose verdict differs between seeds is marked in
`claims.evaluate_claims`.
"""

from keras_uap.report import claims
from keras_uap.report.claims import metric_at
from keras_uap.report.tables import display_name, fmt, markdown_table

__all__ = ["HEADLINES", "headline_numbers", "seeds_section", "seeds_table", "seeds_markdown"]

# Key in the section -> (what the number is, decimals in the table).
HEADLINES = {
    "test_accuracy": ("test accuracy (rotated test set)", 4),
    "gradient_top5_fraction": ("top-5 fraction of the gradient spectrum", 3),
    "gradient_eps80_m100": ("ε80 of the gradient SVD-UAP, m = 100", 2),
    "gradient_eps80_all": ("ε80 of the gradient SVD-UAP, all directions", 2),
    "deepfool_eps80_m100": ("ε80 of the DeepFool SVD-UAP, m = 100", 2),
    "deepfool_eps80_all": ("ε80 of the DeepFool SVD-UAP, all directions", 2),
    "iterative_uap_error_rate": ("iterative UAP's error rate at its build norm (L2), m = 100", 3),
    "iterative_uap_fooling_rate": ("iterative UAP's fooling rate at its build norm (L2), m = 100", 3),
    "claims_holds": ("counted claims that hold", 0),
    "claims_does_not_hold": ("counted claims that do not hold", 0),
    "claims_cannot_be_judged": ("counted claims that cannot be judged", 0),
}


_VERDICT_KEYS = {claims.HOLDS: "claims_holds", claims.DOES_NOT_HOLD: "claims_does_not_hold",
                 claims.CANNOT_BE_JUDGED: "claims_cannot_be_judged"}


def _eps80(by_m, m):
    return (by_m.get(m) or {}).get("eps80") if m is not None else None


def headline_numbers(metrics, model, counted):
    """{HEADLINES key: value or None} of `model` in one seed's `metrics`, its
    claims' verdicts from `counted` (that seed's counted entries). ε80 is None
    where the curve never reaches 80% on its grid; "all" is the largest m."""
    values = {"test_accuracy": metric_at(metrics, "models", model, "test_accuracy"),
              "gradient_top5_fraction": metric_at(metrics, "spectrum", model, "gradient", "top5_fraction")}
    for attack in ("gradient", "deepfool"):
        by_m = metric_at(metrics, "universal", model, attack) or {}
        values[f"{attack}_eps80_m100"] = _eps80(by_m, "100")
        values[f"{attack}_eps80_all"] = _eps80(by_m, max(by_m, key=int) if by_m else None)
    # The comparison's verdict entries hold the iterative UAP's rates at its build norm.
    by_m = metric_at(metrics, "cost_verdict", model) or {}
    entry = next(iter((by_m.get("100") or {}).values()), {})
    values["iterative_uap_error_rate"] = entry.get("iterative_error_rate")
    values["iterative_uap_fooling_rate"] = entry.get("iterative_fooling_rate")
    for verdict, key in _VERDICT_KEYS.items():
        values[key] = sum(e["model"] == model and e["verdict"] == verdict for e in counted)
    return values


def _summary(values):
    defined = [v for v in values if v is not None]
    return {"values": values, "mean": sum(defined) / len(defined) if defined else None,
            "min": min(defined, default=None), "max": max(defined, default=None)}


def seeds_section(by_seed):
    """The `seeds` section of `metrics.json`.

    Args:
        by_seed: {training seed: metrics of the models trained with it}, the
            report's own seed first.

    Returns:
        {"training_seeds": [seed, ...], "models": {model: {HEADLINES key:
        {"values": [one per seed, None where undefined], "mean", "min", "max"}}}};
        mean, min and max are over the defined values (None if there are none).
    """
    numbers = {}
    for seed, metrics in by_seed.items():
        counted = claims.evaluate_claims(metrics)["counted"]
        for model in metrics.get("models", {}):
            numbers.setdefault(model, []).append(headline_numbers(metrics, model, counted))
    return {"training_seeds": list(by_seed),
            "models": {model: {key: _summary([n[key] for n in per_seed]) for key in HEADLINES}
                       for model, per_seed in numbers.items()}}


def seeds_table(section):
    """Each headline number of a `seeds` section per seed, its mean and range, as a markdown table."""
    seeds = section["training_seeds"]
    rows = []
    for model, numbers in section["models"].items():
        for key, (label, digits) in HEADLINES.items():
            s = numbers[key]
            defined = sum(v is not None for v in s["values"])
            over = f" ({defined} of {len(seeds)} seeds)" if 0 < defined < len(seeds) else ""
            mean = fmt(s["mean"], max(digits, 1)) + over
            rows.append([display_name(model), label, *(fmt(v, digits) for v in s["values"]), mean,
                         f"{fmt(s['min'], digits)} – {fmt(s['max'], digits)}"])
    return markdown_table(["Model", "number", *(f"seed {s}" for s in seeds), "mean", "min – max"], rows)


def seeds_markdown(section):
    """The report's "Training seeds" section: each headline number per seed, its mean and range."""
    seeds = section["training_seeds"]
    return "\n".join([
        "## Training seeds", "",
        f"Every model was trained with each of the training seeds {', '.join(map(str, seeds))}, then attacked, "
        f"analysed and evaluated on the same inputs and samples (those of the run's seed {seeds[0]}), so that the "
        f"spread below is the training's. The other sections show the models of seed {seeds[0]}. ε80: n/a where "
        f"the curve does not reach 80% on its grid, left out of the mean (which then says over how many seeds). "
        f"A counted claim whose verdict differs between seeds is marked \"{claims.SEEDS_DISAGREE}\" in the "
        f"Reading and not counted as holding.", "",
        seeds_table(section)])
