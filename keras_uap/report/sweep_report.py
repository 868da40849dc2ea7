"""The rotation-augmentation sweep's report: its metrics, the reading of the
follow-up paper's claim with a criterion fixed in code, `sweep.md` and two
figures. The reading (`reading_lines`: the claim, the criterion, a table over
r and the verdict per model) is read through a `MetricsReader`, so that the
results page's sweep section is the same text, made from a snapshot.

The claim (Kamath, Deshpande and Subrahmanyam, "On Universalized Adversarial
and Invariant Perturbations", arXiv 2006.04449, its abstract in substance;
`FOLLOW_UP_CLAIM` is a paraphrase, not a quotation): as GCNNs gain rotation
invariance through training augmented with larger rotations, the fooling
rate of SVD-Universal gets better. The sweep reads it, per model,
on the fooling ε80 (the L2 norm at which the perturbation changes 80% of the
model's predictions, mean over the sample seeds) of the SVD-UAP from m = 100
attacked inputs, on the test set rotated in [-180, 180]: a better fooling
rate at every norm is a smaller fooling ε80.

Why the fooling rate and not the error rate: the error rate counts the
inputs a model already gets wrong, and a model trained without rotations
gets most rotated inputs wrong before any perturbation (in the first quick
smoke run StdCNN trained at r = 0 was right on 34% of the rotated test
inputs, so its error-rate ε50 was 0), which would read as universal
vulnerability. The fooling rate, the follow-up's own quantity, counts only
the predictions the perturbation changes. The criterion was first written
on the error-rate ε80 and moved to the fooling ε80 after that smoke run,
before any full sweep; the error-rate ε50/ε80 and the error rate at the
report's norm stay in the tables.

The criterion, never changed after a run it judges:
- non-increasing: from each training range to the next larger one, the
  fooling ε80 rises by at most `STEP_TOLERANCE` (5%): neighbouring ranges
  may differ by the noise of a 100-input sample without breaking the trend;
- and lower at the end: the fooling ε80 at the largest range is at least
  `END_MARGIN` (10%) below the one at the smallest, so that a flat curve
  reads as "does not grow"; near ε80 of 6 to 12 the grid's steps are 1 to
  2, so 10% is a change the interpolated crossing resolves.
Both must hold for the gradient and the DeepFool SVD-UAP alike. A curve that
never reaches 80% on its grid has its ε80 above the grid's largest norm,
which decides a comparison only where the other side is on the grid.
"""

import json
import os

import numpy as np
from matplotlib.figure import Figure

from keras_uap.report.build import plain_json
from keras_uap.report.claims import CANNOT_BE_JUDGED, DOES_NOT_HOLD, HOLDS
from keras_uap.report.figures import _floats, _save
from keras_uap.report.metrics_reader import MetricsReader
from keras_uap.report.tables import display_name, fmt, markdown_table

__all__ = ["FOLLOW_UP", "FOLLOW_UP_CLAIM", "CRITERION", "STEP_TOLERANCE", "END_MARGIN", "SWEEP_ATTACKS",
           "TEST_SETS", "SAMPLE_SIZE", "FIGURES", "judge_growth", "sweep_metrics", "summary_table", "reading_lines",
           "figure_lines", "sweep_markdown", "write_sweep_report"]

FOLLOW_UP = ("Kamath, Deshpande, Subrahmanyam, \"On Universalized Adversarial and Invariant Perturbations\", "
             "arXiv 2006.04449")
FOLLOW_UP_CLAIM = ("as GCNNs gain rotation invariance through training augmented with larger rotations, the fooling "
                   "rate of SVD-Universal gets better")
STEP_TOLERANCE = 0.05
END_MARGIN = 0.10
SWEEP_ATTACKS = ("gradient", "deepfool")
TEST_SETS = ("upright", "rotated")   # the official test images, and the data stage's rotated ones
JUDGED_TEST_SET = "rotated"
SAMPLE_SIZE = 100
CRITERION = (f"fooling ε80 of the m = {SAMPLE_SIZE} SVD-UAP on the rotated test set, for both the gradient and "
             f"the DeepFool directions: at most {STEP_TOLERANCE:.0%} higher at each larger training range than at the one "
             f"before, and at least {END_MARGIN:.0%} lower at the largest range than at the smallest")


def _at_most(a, b, factor):
    """a <= factor * b for crossings where None is "above the grid": True, False or None (undecided)."""
    if a is None:
        return None if b is None else False
    return True if b is None else a <= factor * b


def judge_growth(eps80_by_range):
    """The verdict on one attack's fooling ε80 ({range: ε80, None where it is
    above the grid}): (verdict, detail)."""
    ranges = sorted(eps80_by_range)
    values = [eps80_by_range[r] for r in ranges]
    text = ", ".join(f"{r:g}°: {fmt(v, 2) if v is not None else 'above grid'}" for r, v in zip(ranges, values))
    if len(ranges) < 2:
        return CANNOT_BE_JUDGED, f"{text} (one training range)"
    if values[0] is not None and values[0] <= 0:
        return CANNOT_BE_JUDGED, f"{text} (ε80 is 0 at the smallest range)"
    steps = [_at_most(b, a, 1 + STEP_TOLERANCE) for a, b in zip(values, values[1:])]
    end = _at_most(values[-1], values[0], 1 - END_MARGIN)
    checks = steps + [end]
    if False in checks:
        return DOES_NOT_HOLD, text
    if None in checks:
        return CANNOT_BE_JUDGED, f"{text} (undecided above the grid)"
    return HOLDS, text


def _rate_at_norm(curve, key, norm):
    """The curve's `key` rate at L2 norm `norm`, interpolated on its grid; a
    curve stopped early (flat or saturated) keeps its last value beyond it."""
    eps, rate = curve.get("eps") or [], curve.get(key) or []
    return float(np.interp(norm, eps, rate)) if eps and len(eps) == len(rate) else None


def _curve_entry(curve, norm):
    return {"eps50": curve.get("eps50"), "eps80": curve.get("eps80"), "fooling_eps80": curve.get("fooling_eps80"),
            "error_rate_at_norm": _rate_at_norm(curve, "error_rate", norm),
            "fooling_rate_at_norm": _rate_at_norm(curve, "fooling_rate", norm)}


def _cell_metrics(universal, measures, norm):
    entry = {"n_test": measures["n_test"], "accuracy": measures["accuracy"], "invariance": measures["invariance"],
             "random": _curve_entry(universal["random"], norm)}
    for attack in SWEEP_ATTACKS:
        curves, n = universal["curves"][attack], universal["n_directions"][attack]
        entry[attack] = {"n_attacked": n, "top5_fraction": measures["spectrum"][attack]["top5_fraction"],
                         "m100": _curve_entry(curves[str(min(SAMPLE_SIZE, n))], norm),
                         "all": _curve_entry(curves[str(n)], norm)}
    return entry


def sweep_metrics(models, ranges, cells, norm):
    """{"sweep": {model: {range: {test set: ...}}}, "sweep_reading": {model: ...}, ...}
    from `cells` {(model, range, test set): (universal.json, measures.json)}."""
    sweep, reading = {}, {}
    for model in models:
        sweep[model] = {f"{r:g}": {t: _cell_metrics(*cells[model, r, t], norm) for t in TEST_SETS} for r in ranges}
        by_attack = {}
        for attack in SWEEP_ATTACKS:
            eps80 = {r: sweep[model][f"{r:g}"][JUDGED_TEST_SET][attack]["m100"]["fooling_eps80"] for r in ranges}
            verdict, detail = judge_growth(eps80)
            by_attack[attack] = {"verdict": verdict, "detail": detail}
        verdicts = [v["verdict"] for v in by_attack.values()]
        overall = (DOES_NOT_HOLD if DOES_NOT_HOLD in verdicts else CANNOT_BE_JUDGED if CANNOT_BE_JUDGED in verdicts
                   else HOLDS)
        reading[model] = {"verdict": overall, "attacks": by_attack}
    grid_max = max(max(universal["eps_grid"]) for universal, _ in cells.values())
    return plain_json({"sweep": sweep, "sweep_reading": reading, "sweep_ranges": [float(r) for r in ranges],
                       "sweep_norm": float(norm), "sweep_grid_max": float(grid_max), "sweep_criterion": CRITERION,
                       "sweep_claim": FOLLOW_UP_CLAIM})


def _eps(value):
    return fmt(value, 2) if value is not None else "> grid"


def _curve_cells(entry):
    return (f"{_eps(entry['fooling_eps80'])} | {_eps(entry['eps50'])} / {_eps(entry['eps80'])} | "
            f"{fmt(entry['fooling_rate_at_norm'])} / {fmt(entry['error_rate_at_norm'])}")


def summary_table(r, model):
    """One row per training range: accuracy on both test sets, then on the
    rotated test set the invariance, the fooling ε80 of the SVD-UAPs and of
    random directions, and the error rates at the report's norm.

    Args:
        r: a reader of the sweep's `metrics.json` (`MetricsReader`).
        model: a key of its `sweep` section.

    Returns:
        A markdown table.
    """
    rows = []
    for rotation in (f"{x:g}" for x in r.get("sweep_ranges", default=[])):
        cell = ("sweep", model, rotation, JUDGED_TEST_SET)
        fooling = [" / ".join(_eps(r.get(*cell, a, m, "fooling_eps80")) for m in ("m100", "all"))
                   for a in SWEEP_ATTACKS]
        rates = [r.get(*cell, a, "m100", "error_rate_at_norm") for a in SWEEP_ATTACKS]
        upright = r.get("sweep", model, rotation, "upright", "accuracy")
        rows.append([f"{rotation}°", fmt(r.get(*cell, "accuracy")), fmt(upright), fmt(r.get(*cell, "invariance")),
                     *fooling, _eps(r.get(*cell, "random", "fooling_eps80")),
                     " / ".join(fmt(v) for v in [*rates, r.get(*cell, "random", "error_rate_at_norm")])])
    names = [display_name(a) for a in SWEEP_ATTACKS]
    return markdown_table(["r", "accuracy, rotated", "accuracy, upright", "invariance",
                           *(f"fool ε80, {name} (m = {SAMPLE_SIZE} / all)" for name in names), "fool ε80, random",
                           f"error rate @{fmt(r.get('sweep_norm'), 0)}: {' / '.join([*names, 'random'])}"], rows)


def reading_lines(r, models):
    """The follow-up's claim, the criterion, and per model its summary table
    and verdict, all read through `r` (a `MetricsReader` of the sweep's
    `metrics.json`): the reading of `sweep.md` and of the results page."""
    lines = [f"{FOLLOW_UP} reports that {r.get('sweep_claim')}.", "",
             f"Criterion, fixed in code before the sweep it judges: {r.get('sweep_criterion')}.", "",
             f"Per model and training range r, on the rotated test set (the one the criterion reads) but for the "
             f"upright accuracy: the fooling ε80 of the SVD-UAP from m = {SAMPLE_SIZE} and from every attacked "
             f"input, of random directions, and the error rate at L2 norm {fmt(r.get('sweep_norm'), 0)} (m = "
             f"{SAMPLE_SIZE}); > grid: not reached on the grid, whose largest norm is "
             f"{fmt(r.get('sweep_grid_max'), 0)}.", ""]
    for model in models:
        lines += [f"### {display_name(model)}", "", summary_table(r, model), "",
                  f"- {display_name(model)}: universal vulnerability grows with r: "
                  f"**{r.get('sweep_reading', model, 'verdict')}**"]
        lines += [f"  - {display_name(a)}: {r.get('sweep_reading', model, 'attacks', a, 'verdict')} (fooling ε80 "
                  f"{r.get('sweep_reading', model, 'attacks', a, 'detail')})"
                  for a in r.keys("sweep_reading", model, "attacks", order=SWEEP_ATTACKS)]
        lines.append("")
    return lines


def figure_lines(prefix="figures/"):
    """The report's figures as markdown images under `prefix`."""
    return [f"![{text}]({prefix}{name})" for name, (text, _) in FIGURES.items()]


def sweep_markdown(metrics, models):
    """`sweep.md`: one table per model and test set, then the reading."""
    norm = metrics["sweep_norm"]
    lines = ["# Training rotation range against universal vulnerability", "",
             "Each model trained with its inputs rotated uniformly in [-r, r] degrees, then measured on the "
             "official test images (upright) and on the same images rotated in [-180, 180] (rotated). "
             "fool ε80: the L2 norm at which the perturbation changes 80% of the predictions; err ε50/ε80: the "
             f"norms at which the error rate reaches 50%/80%; @{norm:g}: the fooling and error rates at L2 norm "
             f"{norm:g}; > grid: not reached on the grid. invariance: the fraction of predictions unchanged under "
             "a seeded random rotation of the input. Mean curves over the sample seeds; m = all: every attacked "
             "input.", ""]
    head = "fool ε80 | err ε50 / ε80 | fool / err @" + f"{norm:g}"
    for model in models:
        for test_set in TEST_SETS:
            lines += [f"## {display_name(model)}, {test_set} test set", "",
                      f"| r | accuracy | invariance | attack | top-5 fraction | m = 100: {head} | m = all: {head} |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for r, by_set in metrics["sweep"][model].items():
                cell = by_set[test_set]
                for attack in SWEEP_ATTACKS:
                    a = cell[attack]
                    lines.append(f"| {r}° | {fmt(cell['accuracy'])} | {fmt(cell['invariance'])} | "
                                 f"{display_name(attack)} | {fmt(a['top5_fraction'])} | {_curve_cells(a['m100'])} | "
                                 f"{_curve_cells(a['all'])} |")
                lines.append(f"| {r}° | | | random | | {_curve_cells(cell['random'])} | | | |")
            lines.append("")
    lines += ["## Reading", "", *reading_lines(MetricsReader(metrics), models), *figure_lines(), ""]
    return "\n".join(lines)


def _by_range(metrics, model, test_set, pick):
    ranges = metrics["sweep"][model]
    return [float(r) for r in ranges], _floats([pick(by_set[test_set]) for by_set in ranges.values()])


def _plot_eps80(ax, ranges, eps80, grid_max, style, **kwargs):
    """ε80 against r; a point above the grid as an open marker at the grid's largest norm."""
    line, = ax.plot(ranges, eps80, style, **kwargs)
    above = np.isnan(eps80)
    ax.plot(np.asarray(ranges)[above], np.full(above.sum(), grid_max), style[0], mfc="none",
            color=line.get_color())
    return line


def eps80_figure(path, metrics, models):
    """ε80 against r on the rotated test set, one panel per model: the fooling
    ε80 (solid) and error-rate ε80 (dotted) of the m = 100 SVD-UAPs, and the
    random directions' fooling ε80. Open markers on the dotted black line:
    above the grid's largest norm."""
    grid_max = metrics["sweep_grid_max"]
    fig = Figure(figsize=(4.4 * len(models), 3.4), layout="constrained")
    for ax, model in zip(fig.subplots(1, len(models), squeeze=False)[0], models):
        for attack, marker in zip(SWEEP_ATTACKS, "os"):
            line = _plot_eps80(ax, *_by_range(metrics, model, JUDGED_TEST_SET,
                                              lambda c: c[attack]["m100"]["fooling_eps80"]),
                               grid_max, f"{marker}-", label=f"SVD-UAP {display_name(attack)}, fooling")
            _plot_eps80(ax, *_by_range(metrics, model, JUDGED_TEST_SET, lambda c: c[attack]["m100"]["eps80"]),
                        grid_max, f"{marker}:", color=line.get_color(), label=f"SVD-UAP {display_name(attack)}, error")
        _plot_eps80(ax, *_by_range(metrics, model, JUDGED_TEST_SET, lambda c: c["random"]["fooling_eps80"]),
                    grid_max, "^--", color="grey", label="random direction, fooling")
        ax.axhline(grid_max, ls=":", color="k", lw=0.8, label="grid's largest norm")
        ax.set(title=f"{display_name(model)} (m = {SAMPLE_SIZE}, rotated test set)",
               xlabel="training rotation range r (degrees)", ylabel="ε80 (L2 norm)")
        ax.set_ylim(0, 1.08 * grid_max)
        ax.legend(fontsize=7)
    return _save(fig, path)


def accuracy_figure(path, metrics, models):
    """Clean accuracy on the rotated and on the upright test set against r, one line per model."""
    fig = Figure(figsize=(4.8, 3.3))
    ax = fig.subplots()
    for model in models:
        line, = ax.plot(*_by_range(metrics, model, "rotated", lambda c: c["accuracy"]), "o-",
                        label=f"{display_name(model)}, rotated inputs")
        ax.plot(*_by_range(metrics, model, "upright", lambda c: c["accuracy"]), "o:", color=line.get_color(),
                label=f"{display_name(model)}, upright inputs")
    ax.set(xlabel="training rotation range r (degrees)", ylabel="test accuracy", ylim=(0, 1))
    ax.legend(fontsize=7)
    return _save(fig, path)


# The report's figures under `figures/`: what each shows, and the function that draws it.
FIGURES = {"sweep_eps80.png": ("ε80 of the SVD-UAPs and random directions against the training rotation range",
                               eps80_figure),
           "sweep_accuracy.png": ("test accuracy on rotated and upright inputs against the training rotation range",
                                  accuracy_figure)}


def write_sweep_report(output_dir, models, ranges, cells, norm):
    """Writes `metrics.json`, `sweep.md` and `figures/` into `output_dir`; returns the metrics."""
    metrics = sweep_metrics(models, ranges, cells, norm)
    for name, (_, draw) in FIGURES.items():
        draw(os.path.join(output_dir, "figures", name), metrics, models)
    with open(os.path.join(output_dir, "sweep.md"), "w") as f:
        f.write(sweep_markdown(metrics, models))
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    return metrics
