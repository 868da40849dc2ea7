"""The paper's claims, each with a criterion fixed in advance, and their verdicts.

`COUNTED` is the one table of the claims the report counts: each names the
paper's sentence or number, the `metrics.json` key it is judged on and the
criterion, written before any run was judged by it. A criterion is never
changed after the run it judges. `SANITY` lists checks that hold by
construction (Theorem 1 on the rows that gave its eigenvector, Theorem 2's
distances shrinking in sample): they are reported, never counted.

Each verdict is "holds", "does not hold" or "cannot be judged" (a value is
missing, or a curve never reaches the level on its grid so that the
comparison is undecided). With models trained with several seeds, a counted
claim is judged on each seed's models, and one whose seeds give different
verdicts is "seeds disagree": not a result either way, so never counted as
holding.
"""

import dataclasses

from keras_uap.report.tables import PAPER_PRINCIPAL_ANGLES_DEG, display_name, fmt

__all__ = ["HOLDS", "DOES_NOT_HOLD", "CANNOT_BE_JUDGED", "SEEDS_DISAGREE", "Criterion", "COUNTED", "SANITY",
           "TOP5_FRACTION_MIN", "AVG_DOT_MAX", "ANGLE_TOLERANCE_DEG", "ERROR_RATE_TARGET", "RANDOM_EPS80_RATIO_MAX",
           "THEOREM2_BOUND_MAX", "metric_at", "evaluate_claims", "reading_markdown"]

HOLDS, DOES_NOT_HOLD, CANNOT_BE_JUDGED = "holds", "does not hold", "cannot be judged"
SEEDS_DISAGREE = "seeds disagree"

TOP5_FRACTION_MIN = 0.10
AVG_DOT_MAX = 0.07
# Table 1 gives five angles per model; its 5th angles differ by 10 degrees between
# models (68.8 to 78.9), so a tolerance of 5 degrees still tells the models' rows apart.
ANGLE_TOLERANCE_DEG = 5.0
ERROR_RATE_TARGET = 0.80
# "Small norm" has no number in the paper's text, and its figures' norm scale depends
# on its pixel scaling, so the norm is judged against a random direction's on the same
# grid and inputs: the SVD-UAP must reach 80% error at no more than half the norm a
# random direction needs (random directions need about twice a digit's own L2 norm).
RANDOM_EPS80_RATIO_MAX = 0.5
# The sign-aligned distance of two unit vectors is at most √2, so a larger Theorem 2
# bound cannot fail and judges nothing.
THEOREM2_BOUND_MAX = 2 ** 0.5

_PAPER_ATTACKS = ("gradient", "fgsm", "deepfool")   # fgsm_clipped and pgd are this project's additions
_ALL_MODELS = ("stdcnn", "gcnn", "roteqnet")
_FIGURE_MODELS = ("stdcnn", "gcnn")                 # Figs. 5-6: the paper has no RotEqNet curve


@dataclasses.dataclass(frozen=True)
class Criterion:
    """One claim: where the paper makes it, its words, the metric and the test."""

    id: str
    source: str
    paper: str
    metric: str
    criterion: str
    models: tuple = _ALL_MODELS
    attacks: tuple = _PAPER_ATTACKS


COUNTED = (
    Criterion("fig1_top5_fraction", "Sec. 3, Fig. 1",
              "\"the top 5 or less than 1% in number of the squared singular values of this matrix add up to more "
              "than 10% of the overall sum\"", "spectrum.<model>.gradient.top5_fraction",
              f"> {TOP5_FRACTION_MIN:.2f}", attacks=("gradient",)),
    Criterion("figs2b_4b_avg_dot", "Sec. 3, Figs. 2b-4b",
              "\"the top 5 singular vectors of the adversarial directions are nearly orthogonal to the top 5 "
              "singular vectors of the invariant directions, i.e., their average dot product is less than 0.07\"",
              "invariant.<model>.<attack>.avg_abs_dot_top5 (beside it max_abs_dot_top5)",
              f"mean |dot| over the 25 pairs < {AVG_DOT_MAX}"),
    Criterion("figs2b_4b_avg_dot_sample", "Sec. 3, Figs. 2b-4b",
              "\"also holds when we look at a smaller sample of only 500 test points\"",
              "invariant.<model>.<attack>.avg_abs_dot_top5_sample (beside it max_abs_dot_top5_sample)",
              f"mean |dot| over the 25 pairs < {AVG_DOT_MAX}"),
    Criterion("table1_principal_angles", "Sec. 3, Table 1",
              "principal angles (degrees) StdCNN 89.82, 88.07, 84.77, 81.22, 78.85; GCNN 89.07, 88.28, 87.45, "
              "84.27, 68.78; RotEqNet 89.76, 88.89, 85.61, 82.28, 68.97",
              "invariant.<model>.gradient.principal_angles_deg",
              f"each of the five angles within {ANGLE_TOLERANCE_DEG:g}° of the paper's angle of the same rank",
              attacks=("gradient",)),
    Criterion("figs5_6_universal", "Sec. 4, Figs. 5-6",
              "\"we can fool 80-90% of test inputs using the same small-norm universal adversarial attack\"",
              "universal.<model>.<attack>.<largest m>.eps80 and universal.<model>.random.eps80",
              f"ε80 ≤ {RANDOM_EPS80_RATIO_MAX:g} × the random direction's ε80 (random not reaching "
              f"{ERROR_RATE_TARGET:.0%}: its ε80 is above the grid's largest norm)", models=_FIGURE_MODELS),
    Criterion("figs5_6_universal_m100", "Sec. 4, Figs. 5-6",
              "\"if we pick a small sample of 100 random test points ... their top singular vector also gives a "
              "good universal adversarial attack direction ... fooling the model on roughly 80% of test points "
              "using the same small-norm perturbation\"", "universal.<model>.<attack>.100.eps80",
              "the same criterion at m = 100", models=_FIGURE_MODELS),
    Criterion("theorem1_held_out", "Sec. 5, Theorem 1",
              "Pr(|⟨a, v⟩| ≥ δ‖a‖) ≥ (λ − δ²)/(1 − δ²)",
              "theory.<model>.<attack>.theorem1_held_out.rows",
              "λ and v from a seeded half of the directions; the bound holds on the other half at every δ "
              "where it is positive (cannot be judged if it is positive at none)"),
    Criterion("theorem2_bound", "Sec. 5, Theorem 2",
              "‖v − ṽ‖₂ ≤ ε/(γ − ε) for ‖M − M̃‖₂ ≤ ε < γ (\"with a constant probability\")",
              "theory.<model>.<attack>.theorem2",
              "the sign-aligned distance ≤ the bound at every m where the bound is informative (γ > ε and "
              "bound < √2, the largest sign-aligned distance); cannot be judged where it is informative at no m"),
)

SANITY = (
    Criterion("theorem1_in_sample", "Sec. 5, Theorem 1",
              "Pr(|⟨a, v⟩| ≥ δ‖a‖) ≥ (λ − δ²)/(1 − δ²)", "theory.<model>.<attack>.theorem1",
              "holds at every δ with a positive bound; λ and v from the same rows, so it holds for any finite set "
              "of rows"),
    Criterion("theorem2_in_sample", "Sec. 5, Theorem 2",
              "the top eigenvector of a sample approaches v as m grows",
              "theory.<model>.<attack>.sample_distances",
              "mean ‖v − ṽ‖ smaller at the largest m than at the smallest; holds for noise too"),
)


def _entry(claim, model, attack, verdict, value, detail, **extra):
    return {"claim": claim, "model": model, "attack": attack, **extra, "value": value, "verdict": verdict,
            "detail": detail}


def _threshold(value, passes):
    return CANNOT_BE_JUDGED if value is None else HOLDS if passes(value) else DOES_NOT_HOLD


def metric_at(metrics, *keys):
    """metrics[keys[0]][keys[1]]..., or None where a key is missing."""
    node = metrics
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _top5_fraction(metrics, model, attack):
    v = metric_at(metrics, "spectrum", model, attack, "top5_fraction")
    return v, _threshold(v, lambda x: x > TOP5_FRACTION_MIN), fmt(v)


def _avg_dot(suffix):
    def judge(metrics, model, attack):
        mean = metric_at(metrics, "invariant", model, attack, f"avg_abs_dot_top5{suffix}")
        largest = metric_at(metrics, "invariant", model, attack, f"max_abs_dot_top5{suffix}")
        return mean, _threshold(mean, lambda x: x < AVG_DOT_MAX), f"mean {fmt(mean)}, largest pair {fmt(largest)}"
    return judge


def _angles(metrics, model, attack):
    angles, paper = metric_at(metrics, "invariant", model, attack, "principal_angles_deg"), \
        PAPER_PRINCIPAL_ANGLES_DEG.get(model)
    if not angles or None in angles or len(angles) != 5 or paper is None:
        return None, CANNOT_BE_JUDGED, "angles missing"
    off = [abs(a - p) for a, p in zip(angles, paper)]
    detail = "θ " + ", ".join(f"{fmt(a, 1)} ({a - p:+.1f})" for a, p in zip(angles, paper))
    return max(off), HOLDS if max(off) <= ANGLE_TOLERANCE_DEG else DOES_NOT_HOLD, detail


def _grid_max(curve):
    grid = [e for e in (curve or {}).get("eps") or [] if e is not None]
    return max(grid) if grid else None


def _universal_verdict(curve, random):
    """(ratio or None, verdict, detail) of ε80 against RANDOM_EPS80_RATIO_MAX × the random ε80, with a
    curve that never reaches 80% on its grid read as "ε80 above the grid's largest norm"."""
    if not curve or not random or _grid_max(curve) is None or _grid_max(random) is None:
        return None, CANNOT_BE_JUDGED, "curve missing"
    eps80, random80 = curve.get("eps80"), random.get("eps80")
    text = (f"ε80 {fmt(eps80, 2) if eps80 is not None else f'> {fmt(_grid_max(curve), 1)}'}, random "
            f"{fmt(random80, 2) if random80 is not None else f'> {fmt(_grid_max(random), 1)}'}")
    if random80 is not None and random80 <= 0:
        return None, CANNOT_BE_JUDGED, f"{text}: the clean error rate already reaches {ERROR_RATE_TARGET:.0%}"
    if eps80 is not None and random80 is not None:
        ratio = eps80 / random80
        return ratio, HOLDS if ratio <= RANDOM_EPS80_RATIO_MAX else DOES_NOT_HOLD, f"{text} (ratio {fmt(ratio)})"
    if eps80 is not None:  # random above its grid: a lower bound on its ε80
        holds = eps80 <= RANDOM_EPS80_RATIO_MAX * _grid_max(random)
        return None, HOLDS if holds else CANNOT_BE_JUDGED, text
    if random80 is not None:  # this curve above its grid: a lower bound on its ε80
        fails = _grid_max(curve) > RANDOM_EPS80_RATIO_MAX * random80
        return None, DOES_NOT_HOLD if fails else CANNOT_BE_JUDGED, text
    return None, CANNOT_BE_JUDGED, text


def _universal(m_key):
    def judge(metrics, model, attack):
        by_m = metric_at(metrics, "universal", model, attack) or {}
        m = max(by_m, key=int) if m_key is None and by_m else m_key
        ratio, verdict, detail = _universal_verdict(by_m.get(m), metric_at(metrics, "universal", model, "random"))
        return ratio, verdict, f"m = {m}: {detail}" if m_key is None else detail
    return judge


def _theorem1_rows_hold(rows):
    """Theorem 1 at every δ whose bound is positive (a bound ≤ 0 cannot fail)."""
    rows = [r for r in rows or [] if None not in r and r[2] > 0]
    if not rows:
        return None, CANNOT_BE_JUDGED, "the bound is ≤ 0 at every δ"
    held = sum(measured >= bound - 1e-9 for _, measured, bound in rows)
    worst = min(rows, key=lambda r: r[1] - r[2])
    return held, HOLDS if held == len(rows) else DOES_NOT_HOLD, (
        f"{held}/{len(rows)} δ with a positive bound; tightest δ = {fmt(worst[0], 2)}: {fmt(worst[1])} vs bound "
        f"{fmt(worst[2])}")


def _theorem1_held_out(metrics, model, attack):
    return _theorem1_rows_hold(metric_at(metrics, "theory", model, attack, "theorem1_held_out", "rows"))


def _theorem1_in_sample(metrics, model, attack):
    return _theorem1_rows_hold(metric_at(metrics, "theory", model, attack, "theorem1"))


def _theorem2_bound(metrics, model, attack):
    rows = metric_at(metrics, "theory", model, attack, "theorem2") or []
    needed = metric_at(metrics, "theory", model, attack, "theorem2_nonvacuous_m")
    judged = [r for r in rows if r.get("bound") is not None and r["bound"] < THEOREM2_BOUND_MAX]
    if not judged:
        sizes = ", ".join(str(r["m"]) for r in rows) or "none"
        return None, CANNOT_BE_JUDGED, f"bound vacuous or ≥ √2 at every m ({sizes}); ε < γ from about m = {fmt(needed)}"
    held = sum(r["distance"] <= r["bound"] for r in judged)
    detail = "; ".join(f"m = {r['m']}: ‖v − ṽ‖ {fmt(r['distance'])} vs bound {fmt(r['bound'])}" for r in judged)
    return held, HOLDS if held == len(judged) else DOES_NOT_HOLD, detail


def _theorem2_in_sample(metrics, model, attack):
    rows = [r for r in metric_at(metrics, "theory", model, attack, "sample_distances") or [] if r[1] is not None]
    if len(rows) < 2:
        return None, CANNOT_BE_JUDGED, "fewer than two sample sizes"
    return rows[-1][1], HOLDS if rows[-1][1] < rows[0][1] else DOES_NOT_HOLD, \
        f"m = {rows[0][0]}: {fmt(rows[0][1])} → m = {rows[-1][0]}: {fmt(rows[-1][1])}"


_JUDGES = {"fig1_top5_fraction": _top5_fraction, "figs2b_4b_avg_dot": _avg_dot(""),
           "figs2b_4b_avg_dot_sample": _avg_dot("_sample"), "table1_principal_angles": _angles,
           "figs5_6_universal": _universal(None), "figs5_6_universal_m100": _universal("100"),
           "theorem1_held_out": _theorem1_held_out, "theorem2_bound": _theorem2_bound,
           "theorem1_in_sample": _theorem1_in_sample, "theorem2_in_sample": _theorem2_in_sample}
# Which section of the metrics lists the attacks a claim is judged on.
_SECTION = {"fig1_top5_fraction": "spectrum", "figs2b_4b_avg_dot": "invariant", "figs2b_4b_avg_dot_sample": "invariant",
            "table1_principal_angles": "invariant", "figs5_6_universal": "universal",
            "figs5_6_universal_m100": "universal"}


def _judge_all(criteria, metrics):
    out = []
    for c in criteria:
        section = metrics.get(_SECTION.get(c.id, "theory"), {})
        for model in (m for m in c.models if m in section):
            for attack in (a for a in c.attacks if a in section[model]):
                value, verdict, detail = _JUDGES[c.id](metrics, model, attack)
                out.append(_entry(c.id, model, attack, verdict, value, detail))
    return out


def _judge_seeds(counted, by_seed):
    """Adds each counted entry's verdict per training seed ("seed_verdicts");
    an entry whose seeds' verdicts differ becomes SEEDS_DISAGREE."""
    per_seed = {seed: {(e["claim"], e["model"], e["attack"]): e["verdict"] for e in _judge_all(COUNTED, m)}
                for seed, m in by_seed.items()}
    for entry in counted:
        key = (entry["claim"], entry["model"], entry["attack"])
        verdicts = {str(seed): found.get(key, CANNOT_BE_JUDGED) for seed, found in per_seed.items()}
        entry["seed_verdicts"] = verdicts
        if len(set(verdicts.values())) > 1:
            entry["verdict"] = SEEDS_DISAGREE
            entry["detail"] += " [" + "; ".join(f"training seed {s}: {v}" for s, v in verdicts.items()) + "]"


def evaluate_claims(metrics, by_seed=None):
    """Judges every claim of `COUNTED` and every check of `SANITY` on `metrics`.

    Args:
        metrics: the report's metrics (`build.measured_metrics`).
        by_seed: None, or {training seed: metrics of the models trained with
            it}, `metrics` among them: each counted claim is judged on every
            seed too, and is SEEDS_DISAGREE where their verdicts differ.

    Returns:
        {"criteria": {id: {"source", "paper", "metric", "criterion", "counted"}},
        "counted": [entry], "sanity": [entry], "counts": {verdict: number of counted
        entries}}, each entry {"claim", "model", "attack", "value", "verdict", "detail"}
        (with `by_seed`, also "seed_verdicts" {seed: verdict} on the counted ones, and
        SEEDS_DISAGREE among the counts). Values and details are those of `metrics`.
    """
    counted, sanity = _judge_all(COUNTED, metrics), _judge_all(SANITY, metrics)
    verdicts = (HOLDS, DOES_NOT_HOLD, CANNOT_BE_JUDGED)
    if by_seed and len(by_seed) > 1:
        _judge_seeds(counted, by_seed)
        verdicts += (SEEDS_DISAGREE,)
    criteria = {c.id: {"source": c.source, "paper": c.paper, "metric": c.metric, "criterion": c.criterion,
                       "counted": c in COUNTED} for c in COUNTED + SANITY}
    counts = {v: sum(e["verdict"] == v for e in counted) for v in verdicts}
    return {"criteria": criteria, "counted": counted, "sanity": sanity, "counts": counts}


def _bullets(criteria, entries):
    lines = []
    for c in criteria:
        items = [e for e in entries if e["claim"] == c.id]
        if items:
            parts = [f"{' '.join(display_name(k) for k in (e['model'], e['attack']) if k)} {e['detail']} "
                     f"(**{e['verdict']}**)" for e in items]
            lines.append(f"- **{c.source}** ({c.id}): {c.paper}. Criterion: {c.criterion}. " + "; ".join(parts) + ".")
    return lines


def reading_markdown(claims):
    """The report's Reading section from `evaluate_claims`' result: counted claims with their verdicts and
    counts, then the sanity checks (listed, not counted)."""
    counts = claims["counts"]
    total = sum(counts.values())
    lines = ["Counted: the paper's claims, each judged by the criterion fixed in `keras_uap/report/claims.py` "
             "before any run.", ""]
    lines += _bullets(COUNTED, claims["counted"])
    disagree = (f" and {counts[SEEDS_DISAGREE]} have training seeds that disagree (not counted as holding)"
                if SEEDS_DISAGREE in counts else "")
    lines += ["", f"Of {total} counted checks, {counts[HOLDS]} hold, {counts[DOES_NOT_HOLD]} do not hold"
                  f"{',' if disagree else ' and'} {counts[CANNOT_BE_JUDGED]} cannot be judged{disagree}.", "",
              "Sanity checks (true by construction whatever the directions are, so listed and not counted):", ""]
    lines += _bullets(SANITY, claims["sanity"])
    return "\n".join(lines)

