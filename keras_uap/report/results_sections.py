"""What the results pages say: the README's headline table and the sections of
`docs/results.md`, each number set beside the paper's.

Every function reads the run's metrics through a reader `r` with
`r.get(*path, default=None)`, `r.keys(*path, order=())` and
`r.rows(*path, fields=...)` (a `metrics_reader.MetricsReader`), never the
dict itself, so that the numbers shown can be recorded; a section whose keys
the run lacks is left out. The sweep's section reads a sweep's `metrics.json`
through its own reader `s`.
"""

from keras_uap.report.claims import (AVG_DOT_MAX, CANNOT_BE_JUDGED, DOES_NOT_HOLD, ERROR_RATE_TARGET, HOLDS,
                                     SEEDS_DISAGREE, THEOREM2_BOUND_MAX, TOP5_FRACTION_MIN)
from keras_uap.report.comparison import METHOD_NAMES
from keras_uap.report.seeds import HEADLINES, seeds_table
from keras_uap.report.sweep_report import TEST_SETS, figure_lines, reading_lines
from keras_uap.report.tables import (ATTACK_ORDER, MODEL_ORDER, PAPER_PRINCIPAL_ANGLES_DEG, display_name, fmt,
                                     markdown_table)

__all__ = ["PAPER", "claim_counts", "headline_table", "readme_section", "results_page"]

# What the paper reports, beside which each row is set, and where it says so.
PAPER = {
    "top5_fraction": (f"> {TOP5_FRACTION_MIN:.2f}", "Sec. 3, Fig. 1"),
    "avg_abs_dot_top5": (f"< {AVG_DOT_MAX:.2f}", "Sec. 3, Figs. 2b-4b"),
    "principal_angles": (" / ".join(f"{angles[-1]:.1f}" for angles in PAPER_PRINCIPAL_ANGLES_DEG.values()),
                         "Table 1"),
    "universal": (f"{ERROR_RATE_TARGET:.0%}-90% of test inputs at a small norm", "Sec. 2 and 4, Figs. 5-6"),
    "universal_m100": ("about 80% from m = 100 (1% of the test set)", "Sec. 4"),
    "theory": ("Theorem 1 bound; ‖v − ṽ‖ ≤ ε/(γ − ε) (Theorem 2)", "Sec. 5"),
}
VERDICTS = (HOLDS, DOES_NOT_HOLD, CANNOT_BE_JUDGED)


def _rate(value):
    # Three decimals everywhere a rate meets a threshold: 0.796 must not print as 0.80.
    return fmt(value, 3)


def _eps80(r, *path):
    """The L2 norm of 80% error rate, or "not reached (max x)" with the curve's highest rate."""
    eps80 = r.get(*path, "eps80")
    if eps80 is not None:
        return fmt(eps80, 1)
    rates = [v for v in r.get(*path, "error_rate", default=[]) if v is not None]
    return f"not reached (max {_rate(max(rates))})" if rates else "n/a"


def _max_rate(r, *path):
    rates = [v for v in r.get(*path, "error_rate", default=[]) if v is not None]
    return _rate(max(rates)) if rates else "n/a"


def _ms_of(r, *path):
    return sorted(r.keys(*path), key=int)


def _ms(r, model, attack):
    return _ms_of(r, "universal", model, attack)


def _ends(ms):
    return ms[:1] + ms[1:][-1:]


def _models(r):
    return r.keys("models", order=MODEL_ORDER)


def _paper(key):
    text, where = PAPER[key]
    return f"{text} ({where})"


def _entries(r, group):
    return r.rows("claims", group, fields=("claim", "model", "attack", "verdict"))


def _verdicts(r):
    """VERDICTS, and SEEDS_DISAGREE for a run whose models were trained with several seeds."""
    return VERDICTS + ((SEEDS_DISAGREE,) if r.get("claims", "counts", SEEDS_DISAGREE) is not None else ())


def claim_counts(r):
    """{verdict: number} over the counted claims in `claims.counts`, or None when the run judged none."""
    counts = {v: r.get("claims", "counts", v) for v in _verdicts(r)}
    return counts if any(counts.values()) else None


def _counts_sentence(counts):
    disagree = (f" and {counts[SEEDS_DISAGREE]} have training seeds that disagree (not counted as holding)"
                if SEEDS_DISAGREE in counts else "")
    return (f"Of the {sum(counts.values())} counted checks of the paper's claims, {counts[HOLDS]} hold, "
            f"{counts[DOES_NOT_HOLD]} do not hold{',' if disagree else ' and'} {counts[CANNOT_BE_JUDGED]} cannot "
            f"be judged{disagree}")


def headline_table(r):
    models = _models(r)
    header = [""] + [display_name(m) for m in models] + ["paper"]
    rows = [["rotated test accuracy"] + [fmt(r.get("models", m, "test_accuracy"), 3) for m in models] + [""]]
    if any(r.keys("spectrum", m) for m in models):
        rows.append(["top-5 fraction of the gradient spectrum"]
                    + [_rate(r.get("spectrum", m, "gradient", "top5_fraction")) for m in models]
                    + [_paper("top5_fraction")])
    if any(r.keys("invariant", m) for m in models):
        rows.append(["mean |dot|, top-5 gradient vs invariant vectors"]
                    + [_rate(r.get("invariant", m, "gradient", "avg_abs_dot_top5")) for m in models]
                    + [_paper("avg_abs_dot_top5")])
        rows.append(["5th principal angle, gradient vs invariant top-5 (degrees)"]
                    + [fmt((r.get("invariant", m, "gradient", "principal_angles_deg") or [None] * 5)[4], 1)
                       for m in models] + [_paper("principal_angles")])
    if any(r.keys("universal", m) for m in models):
        rows.append(["L2 norm for 80% error rate, gradient SVD vector, smallest / largest m"]
                    + [" / ".join(_eps80(r, "universal", m, "gradient", k) for k in _ends(_ms(r, m, "gradient")))
                       or "n/a" for m in models] + [_paper("universal")])
        rows.append(["same, random direction"] + [_eps80(r, "universal", m, "random") for m in models] + [""])
        rows.append(["highest error rate, gradient SVD vector (all inputs)"]
                    + [_max_rate(r, "universal", m, "gradient", (_ms(r, m, "gradient") or ["-"])[-1])
                       for m in models] + [f"0.8-0.9 ({PAPER['universal'][1]})"])
    verdicts = {m: ("cost_verdict", m, _ms_of(r, "cost_verdict", m)[0], "svd_gradient")
                for m in models if _ms_of(r, "cost_verdict", m)}
    if verdicts:
        first = next(iter(verdicts.values()))
        rows.append([f"fooling rate at L2 {fmt(r.get(*first, 'eps'), 0)}, m = {first[2]}: gradient SVD-UAP / "
                     f"iterative UAP"]
                    + [f"{_rate(r.get(*verdicts[m], 'fooling_rate'))} / "
                       f"{_rate(r.get(*verdicts[m], 'iterative_fooling_rate'))}" if m in verdicts else "n/a"
                       for m in models] + ["not in the paper"])
    return markdown_table(header, rows)


def _spectrum_section(r, models):
    rows = [[display_name(m), display_name(a), _rate(r.get("spectrum", m, a, "top1_fraction")),
             _rate(r.get("spectrum", m, a, "top5_fraction")), _rate(r.get("spectrum", m, a, "top10_fraction"))]
            for m in models for a in r.keys("spectrum", m, order=ATTACK_ORDER)]
    if not rows:
        return []
    return ["## Spectrum of the attack directions (Fig. 1, Figs. 2a-4a)", "",
            f"Fraction of the squared singular values in the top k. Paper: top-5 of the gradients "
            f"{_paper('top5_fraction')}.", "",
            markdown_table(["model", "attack", "top-1", "top-5", "top-10"], rows), ""]


def _invariant_section(r, models):
    rows, angles = [], []
    for m in models:
        for a in r.keys("invariant", m, order=ATTACK_ORDER):
            rows.append([display_name(m), display_name(a), _rate(r.get("invariant", m, a, "avg_abs_dot_top5")),
                         _rate(r.get("invariant", m, a, "avg_abs_dot_top10"))])
        run = r.get("invariant", m, "gradient", "principal_angles_deg")
        if run:
            paper = PAPER_PRINCIPAL_ANGLES_DEG.get(m)
            angles.append([display_name(m), ", ".join(fmt(v, 1) for v in run),
                           ", ".join(f"{v:.1f}" for v in paper) if paper else "n/a"])
    if not rows:
        return []
    return ["## Adversarial against invariant directions (Figs. 2b-4b, Table 1)", "",
            f"Mean \\|dot\\| over all pairs of the top-k adversarial and invariant singular vectors. Paper: "
            f"top-5 {_paper('avg_abs_dot_top5')}.", "",
            markdown_table(["model", "attack", "top-5", "top-10"], rows), "",
            "Principal angles (degrees) between the top-5 gradient and invariant subspaces, beside Table 1:", "",
            markdown_table(["model", "this run", "paper (Table 1)"], angles), ""]


def _universal_section(r, models):
    rows = []
    for m in models:
        for a in r.keys("universal", m, order=ATTACK_ORDER):
            if a == "random":
                continue
            ms = _ms(r, m, a)
            other = (_eps80(r, "universal", m, a, ms[-1], "other_sign")
                     if r.get("universal", m, a, ms[-1], "other_sign") else "-")
            rows.append([display_name(m), display_name(a)] + [" / ".join(_eps80(r, "universal", m, a, k) for k in ms)]
                        + [_max_rate(r, "universal", m, a, ms[-1])] + [", ".join(ms), other])
        if r.keys("universal", m, "random"):
            rows.append([display_name(m), "random", _eps80(r, "universal", m, "random"),
                         _max_rate(r, "universal", m, "random"), "-", "-"])
    if not rows:
        return []
    return ["## Universal perturbation along the top singular vector (Figs. 5-6)", "",
            f"L2 norm (pixels in [0, 1]) at which the error rate reaches 80%, for the vector of m inputs' "
            f"directions; highest error rate on the curve for the largest m. Paper: {_paper('universal')}; "
            f"{_paper('universal_m100')}. An SVD fixes the vector only up to sign; the sign kept is the one whose "
            f"error rate on the m sampled inputs has the larger area over the grid of norms (no test-set curve "
            f"chooses it). The last column is the largest m's vector with the other sign.", "",
            markdown_table(["model", "direction", "ε80, by m", "highest error rate", "m",
                            "ε80, other sign (largest m)"], rows), ""]


def _theorem1_held(rows):
    """"held of judged" over the δ whose Theorem 1 bound is positive (a bound ≤ 0 cannot fail)."""
    judged = [row for row in rows or [] if None not in row and row[2] > 0]
    if not judged:
        return "bound ≤ 0 at every δ"
    return f"{sum(measured >= bound - 1e-9 for _, measured, bound in judged)} of {len(judged)}"


def _theorem2_held(rows):
    """"held of judged" over the m whose Theorem 2 bound is informative (not vacuous, below √2)."""
    judged = [row for row in rows or [] if row.get("bound") is not None and row["bound"] < THEOREM2_BOUND_MAX]
    if not judged:
        return "uninformative at every m"
    return f"{sum(row['distance'] <= row['bound'] for row in judged)} of {len(judged)}"


def _theory_section(r, models):
    rows = []
    for m in models:
        for a in r.keys("theory", m, order=ATTACK_ORDER):
            sample = [row for row in r.get("theory", m, a, "sample_distances", default=[]) if row[1] is not None]
            rows.append([display_name(m), display_name(a), fmt(r.get("theory", m, a, "top_eigenvalue"), 3),
                         _theorem1_held(r.get("theory", m, a, "theorem1_held_out", "rows")),
                         _theorem2_held(r.rows("theory", m, a, "theorem2", fields=("m", "bound", "distance"))),
                         fmt(r.get("theory", m, a, "theorem2_nonvacuous_m")),
                         " → ".join(f"{fmt(row[1], 3)} (m = {row[0]})" for row in sample[:1] + sample[1:][-1:])
                         or "n/a"])
    if not rows:
        return []
    return ["## Section 5: Theorems 1 and 2", "",
            f"λ₁ is the top eigenvalue of M = E[a aᵀ/‖a‖²]. Paper: {_paper('theory')}. Theorem 1 is checked on "
            "a held-out half of the directions (λ and v from the other half), at the δ where its bound is "
            "positive; Theorem 2 at the sample sizes m where its bound ε/(γ − ε) is informative (γ > ε and "
            "below √2). The in-sample distances shrink for any directions, noise too: a sanity check, not "
            "counted.", "",
            markdown_table(["model", "attack", "λ₁", "Theorem 1 holds, held out (δ)", "Theorem 2 holds (m)",
                            "m where ε < γ (estimate)", "in sample: mean ‖v − v_m‖"], rows), ""]


def _comparison_section(r, models):
    rows, paths = [], [("cost_verdict", m, k, method) for m in models for k in _ms_of(r, "cost_verdict", m)
                       for method in r.keys("cost_verdict", m, k, order=("svd_gradient", "svd_deepfool"))]
    for v in paths:
        rows.append([display_name(v[1]), v[2], METHOD_NAMES.get(v[3], v[3]), _rate(r.get(*v, "fooling_rate")),
                     _rate(r.get(*v, "iterative_fooling_rate")), fmt(r.get(*v, "gradient_ratio"), 3),
                     fmt(r.get("timings", "cost_time_ratio", *v[1:]), 3),
                     {True: "yes", False: "no"}.get(r.get(*v, "answer"), "n/a")])
    if not rows:
        return []
    return ["## Beyond the paper: SVD-UAP against the iterative UAP", "",
            "Built from the same m test inputs; fooling rate (prediction changed) at the iterative UAP's L2 norm "
            f"of {fmt(r.get(*paths[0], 'eps'), 0)}; cost as a fraction of the iterative UAP's gradient evaluations, "
            "and its wall-clock time beside it (not part of the verdict). \"Yes\" when the SVD-UAP fools at least "
            "as many inputs at a tenth of the gradient evaluations or less. Not in the paper.", "",
            markdown_table(["model", "m", "method", "fooling rate", "iterative UAP", "gradient evaluations",
                            "time", "at a tenth of the cost?"], rows), "",
            "![Universal perturbation methods, L2](figures/comparison_l2.png)", ""]


def _transfer_section(r):
    models = r.keys("transfer", "table", "svd_gradient", order=MODEL_ORDER)
    if not models:
        return []
    rows = [[display_name(s)] + [_rate(r.get("transfer", "table", "svd_gradient", s, t, "error_rate"))
                                 for t in models] for s in models]
    return ["## Beyond the paper: transfer across models", "",
            f"Error rate of each model's gradient SVD-UAP (m = {r.get('transfer', 'm')}, L2 norm "
            f"{fmt(r.get('transfer', 'norm'), 0)}) on every model's test inputs "
            "(rows: built on; columns: evaluated on).", "",
            markdown_table(["built on \\ evaluated on", *[display_name(m) for m in models]], rows), ""]


def _sweep_section(s):
    """The training-rotation sweep: what it does, the command that made it, and its reading (claim, criterion,
    a table and the verdict per model, shared with the sweep's own `sweep.md`) and figures."""
    models = s.keys("sweep_reading", order=MODEL_ORDER)
    ranges = ",".join(f"{x:g}" for x in s.get("sweep_ranges", default=[]))
    n_test = sorted({s.get("sweep", m, f"{x:g}", t, "n_test") for m in models
                     for x in s.get("sweep_ranges", default=[]) for t in TEST_SETS} - {None})
    return ["## Beyond the paper: training-rotation sweep", "",
            "The paper trains every model with rotations in [-180, 180]. The sweep trains each model with its "
            "inputs rotated uniformly in [-r, r], for each range r, and measures it on "
            f"{' or '.join(f'{n:,}' for n in n_test)} test images, upright (the official ones) and rotated in "
            "[-180, 180] (which of them each attack and curve uses: [sweep.md](sweep.md)). Made by "
            f"`keras-uap sweep --augmentation {ranges} --models {','.join(models)}`, its numbers shown from the "
            "snapshot [`metrics-sweep.json`](metrics-sweep.json). Not in the paper.", "",
            *reading_lines(s, models), *figure_lines(), ""]


def _seeds_section(s, run_models):
    """What varies with the training seed: the `seeds` section of a run with several training seeds, its
    command, and each headline number per seed with its mean and range; `run_models` are the page's models
    (those not retrained are named)."""
    training_seeds = s.get("seeds", "training_seeds", default=[])
    models = s.keys("seeds", "models", order=MODEL_ORDER)
    section = {"training_seeds": training_seeds,
               "models": {m: {key: {part: s.get("seeds", "models", m, key, part) for part in
                                    ("values", "mean", "min", "max")} for key in HEADLINES} for m in models}}
    seeds = ",".join(str(x) for x in training_seeds)
    return ["## What varies with the training seed", "",
            f"Made by `keras-uap run-all --models {','.join(models)} --training-seeds {seeds}` (the default "
            f"profile), its numbers shown from the snapshot [`metrics-seeds.json`](metrics-seeds.json): each model "
            f"trained with each seed, then attacked, analysed and evaluated on the same test inputs and samples "
            f"(those of seed {training_seeds[0]}), so the spread is the training's alone. The sections above show "
            f"seed {training_seeds[0]}'s models: a difference between two models, or from the paper, that is "
            "smaller than these ranges is within what retraining alone changes. ε80: n/a where the curve does not "
            "reach 80% on its grid, left out of the mean.", "",
            *([f"Not retrained with other seeds: {', '.join(display_name(m) for m in missing)}.", ""]
              if (missing := [m for m in run_models if m not in models]) else []),
            seeds_table(section), ""]


def _verdict_table(r, entries, verdicts=VERDICTS):
    by_claim = {}
    for e in entries:
        who = " ".join(display_name(x) for x in (e.get("model"), e.get("attack")) if x)
        by_claim.setdefault(e["claim"], {}).setdefault(e.get("verdict"), []).append(who)
    rows = [[f"{r.get('claims', 'criteria', claim, 'source')} (`{claim}`): "
             f"{r.get('claims', 'criteria', claim, 'criterion')}",
             *[", ".join(found.get(v, [])) or "-" for v in verdicts]]
            for claim, found in by_claim.items()]
    return markdown_table(["claim (criterion)", *verdicts], rows)


def _claims_section(r):
    counted, sanity = _entries(r, "counted"), _entries(r, "sanity")
    if not counted:
        return []
    lines = ["## Each claim checked", "",
             f"{_counts_sentence(claim_counts(r))}. Each claim is judged by the criterion fixed beside the "
             "paper's words in `keras_uap/report/claims.py`; the verdicts' details are in the run's "
             "`report/report.md`.", "", _verdict_table(r, counted, _verdicts(r)), ""]
    if sanity:
        lines += ["Sanity checks, true by construction whatever the directions are, so listed and not counted:", "",
                  _verdict_table(r, sanity), ""]
    return lines


def results_page(r, sweep=None, seeds=None):
    """`docs/results.md` from the run's reader `r`, with the sweep's section where `sweep` (a reader of a
    sweep's `metrics.json`) is given, and the training seeds' where `seeds` (a reader of the `metrics.json` of
    a run with several training seeds) is."""
    models = _models(r)
    trained = [[display_name(m), fmt(r.get("models", m, "test_accuracy"), 3), fmt(r.get("models", m, "epochs")),
                f"{r.get('models', m, 'universal_n_eval'):,}" if r.get("models", m, "universal_n_eval") else "n/a"]
               for m in models]
    figures = [f"![{display_name(m)} universal curves](figures/{m}_universal.png)"
               for m in models if r.keys("universal", m)]
    lines = ["# Results beside the paper", "",
             "Generated by `python -m keras_uap.report.results_pages` from a run's `metrics.json`; do not edit by "
             "hand. The committed page is the default run's (`keras-uap run-all`, seed 0), made from its snapshot "
             "[`metrics-default.json`](metrics-default.json). Error rate: "
             "fraction of perturbed test inputs misclassified (the paper's \"fooling rate\"); fooling rate: "
             "fraction whose prediction changed. Norms are L2, pixels in [0, 1]. Where each number comes from: "
             "[paper-map.md](paper-map.md); its `metrics.json` key: [pipeline.md](pipeline.md).", "",
             markdown_table(["model", "rotated test accuracy", "epochs", "test inputs in the curves"], trained),
             ""]
    lines += _spectrum_section(r, models)
    if r.keys("spectrum"):
        lines += ["![Top-5 fraction of the gradient spectrum](figures/fig1_top5_fraction_gradient.png)", ""]
    lines += _invariant_section(r, models)
    lines += _universal_section(r, models)
    lines += [*figures, ""] if figures else []
    lines += _theory_section(r, models)
    lines += _comparison_section(r, models)
    lines += _transfer_section(r)
    lines += _seeds_section(seeds, models) if seeds is not None else []
    lines += _sweep_section(sweep) if sweep is not None else []
    lines += _claims_section(r)
    return "\n".join(lines).rstrip() + "\n"


def readme_section(r):
    """The README's results: the headline table, the claims' verdicts counted, and three figures."""
    counts = claim_counts(r)
    verdicts = f"{_counts_sentence(counts)}; " if counts else ""
    lines = [headline_table(r), "", f"{verdicts}every table: [docs/results.md](docs/results.md).", ""]
    if r.keys("spectrum"):
        lines.append("![Top-5 fraction of the gradient spectrum](docs/figures/fig1_top5_fraction_gradient.png)")
    curves = [m for m in _models(r) if r.keys("universal", m)]
    if curves:
        model = "gcnn" if "gcnn" in curves else curves[0]
        lines.append(f"![{display_name(model)}: error rate against the L2 norm of the universal perturbation]"
                     f"(docs/figures/{model}_universal.png)")
    if r.keys("cost_verdict"):
        lines.append("![SVD-UAP against the iterative UAP and other baselines](docs/figures/comparison_l2.png)")
    return "\n".join(lines).rstrip()
