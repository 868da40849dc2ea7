"""The report's markdown: tables, the Reading section and `report.md` itself,
with the paper's numbers and claims they are set beside.

Everything here reads the plain `metrics` dict that `build_report` assembles
(never the raw artifacts), so the report shows exactly what `metrics.json`
holds. Missing or undefined values (JSON null) print as "n/a".
"""

import math
import os

from keras_uap.method import ATTACK_NAMES, PAPER_ATTACKS

__all__ = ["MODEL_ORDER", "ATTACK_ORDER", "PAPER_ATTACKS", "PAPER_TOP5_FRACTION_MIN", "PAPER_AVG_DOT_MAX",
           "PAPER_ERROR_RATE_TARGET", "PAPER_MEAN_ANGLE_MIN_DEG", "PAPER_PRINCIPAL_ANGLES_DEG", "PAPER_FIGURES",
           "CLAIM_TEXT", "display_name", "fmt", "markdown_table", "models_table", "spectrum_table",
           "invariant_dot_table", "principal_angles_table", "principal_angles_all_table", "universal_table",
           "fgsm_clipping_table", "theory_table", "timings_table", "all_tables", "reading_markdown",
           "report_markdown"]

# Paper order, so that tables, panels and legends read like the paper's; others follow sorted.
MODEL_ORDER = ("stdcnn", "gcnn", "roteqnet")
ATTACK_ORDER = ATTACK_NAMES  # the registry's order

# The paper's claims, as thresholds the Reading section checks.
PAPER_TOP5_FRACTION_MIN = 0.10   # Sec. 3 / Fig. 1: top-5 of gradients hold > 10% of the spectrum.
PAPER_AVG_DOT_MAX = 0.07         # Sec. 3 / Figs. 2b-4b: average |dot| of top-5 vectors < 0.07.
PAPER_ERROR_RATE_TARGET = 0.80   # Sec. 2/4: the universal direction fools > 80% of test inputs.
# "Nearly 90 degree" principal angles (Table 1) has no number in the paper; its own
# per-model means are 83.1-84.5 degrees, so a mean of at least 80 is read as agreeing.
PAPER_MEAN_ANGLE_MIN_DEG = 80.0
CLAIM_TEXT = {
    "gradient_top5_fraction": f"Top-5 fraction of the squared spectrum of gradient directions > "
                              f"{PAPER_TOP5_FRACTION_MIN:.2f} (Sec. 3, Fig. 1)",
    "invariant_dot_top5": f"Average |dot| of top-5 adversarial vs invariant singular vectors < {PAPER_AVG_DOT_MAX}, "
                          f"all inputs (Sec. 3, Figs. 2b/3b)",
    "invariant_dot_top5_sample": "Same, on the sample (Sec. 3: \"also holds ... only 500 test points\")",
    "principal_angles": f"Top-5 gradient and invariant subspaces nearly orthogonal: mean principal angle ≥ "
                        f"{PAPER_MEAN_ANGLE_MIN_DEG:.0f}° (Table 1)",
    "universal_all": f"Top singular vector of all inputs' directions reaches {PAPER_ERROR_RATE_TARGET:.0%} error "
                     f"rate, at a smaller norm than a random direction (Sec. 4, Figs. 5/6)",
    "universal_m100": "Same from m = 100 inputs (about 1% of the test set) (Sec. 4)",
    "theorem1": "Theorem 1's lower bound holds at every δ measured (Sec. 5)",
    "theorem2": "Theorem 2: mean ‖v − ṽ‖ shrinks from the smallest to the largest sample size m (Sec. 5)",
    "fgsm_clipped_constant": "Clipped-FGSM top vector is closer to a constant image than unclipped FGSM's "
                             "(this report's explanation, not a paper claim)",
}

# Table 1 of the paper: principal angles (degrees, descending) between the top-5
# singular subspaces of gradient directions and of invariant (small rotation) directions.
PAPER_PRINCIPAL_ANGLES_DEG = {
    "stdcnn": (89.82170934, 88.06580815, 84.76831292, 81.22444162, 78.85267548),
    "gcnn": (89.06822425, 88.27986252, 87.45134508, 84.26710498, 68.77651938),
    "roteqnet": (89.75561818, 88.88988678, 85.60567329, 82.28177397, 68.96832307),
}

_DISPLAY_NAMES = {
    "stdcnn": "StdCNN", "gcnn": "GCNN", "roteqnet": "RotEqNet",
    "gradient": "gradient", "fgsm": "FGSM", "fgsm_clipped": "FGSM (clipped)", "deepfool": "DeepFool", "pgd": "PGD",
    "invariant": "invariant", "random": "random",
}


def display_name(key):
    """The paper's spelling of a model or attack key ("gcnn" -> "GCNN"); unknown keys as given."""
    return _DISPLAY_NAMES.get(key, key)


def fmt(value, digits=3):
    """Formats a number for a table; None and non-finite values as "n/a"."""
    if value is None or isinstance(value, bool):
        return "n/a" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def markdown_table(header, rows):
    """A GitHub-flavoured markdown table; pipes inside cells are escaped."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header))] + [line(r) for r in rows])


def models_table(metrics):
    """Test accuracy, clean error rate and export path per model."""
    rows = [[display_name(m), fmt(info.get("test_accuracy"), 4), fmt(info.get("clean_error_rate"), 4),
             fmt(info.get("best_val_accuracy"), 4), fmt(info.get("epochs")), f"`{info.get('export_path')}`"]
            for m, info in metrics["models"].items()]
    return markdown_table(["Model", "test accuracy", "clean error rate (universal stage)",
                           "best val. accuracy", "epochs", "export"], rows)


def spectrum_table(metrics):
    """Fractions of the total squared spectrum in the top 1/5/10 singular values."""
    rows = []
    for model, attacks in metrics["spectrum"].items():
        for attack, s in attacks.items():
            rows.append([display_name(model), display_name(attack), fmt(s["top1_fraction"]),
                         fmt(s["top5_fraction"]), fmt(s["top10_fraction"]), fmt(s["top5_fraction_sample"])])
    return markdown_table(["Model", "Attack", "top-1", "top-5", "top-10", "top-5 (sample)"], rows)


def invariant_dot_table(metrics):
    """Average |dot product| of top-k adversarial vs invariant singular vectors."""
    rows = [[display_name(model), display_name(attack), fmt(c["avg_abs_dot_top5"]), fmt(c["avg_abs_dot_top10"]),
             fmt(c["avg_abs_dot_top5_sample"]), fmt(c["avg_abs_dot_top10_sample"])]
            for model, attacks in metrics["invariant"].items() for attack, c in attacks.items()]
    return markdown_table(["Model", "Attack", "top-5 (all)", "top-10 (all)", "top-5 (sample)", "top-10 (sample)"],
                          rows)


def principal_angles_table(metrics, attack="gradient"):
    """Table 1: principal angles for `attack` per model, beside the paper's where it has them."""
    header, columns = ["#"], []
    for model, attacks in metrics["invariant"].items():
        header.append(f"{display_name(model)} (this run)")
        columns.append((attacks.get(attack) or {}).get("principal_angles_deg") or [])
        if model in PAPER_PRINCIPAL_ANGLES_DEG:
            header.append(f"{display_name(model)} (paper)")
            columns.append(list(PAPER_PRINCIPAL_ANGLES_DEG[model]))
    rows = [[str(i + 1)] + [fmt(col[i], 2) if i < len(col) else "n/a" for col in columns] for i in range(5)]
    return markdown_table(header, rows)


def principal_angles_all_table(metrics):
    """Principal angles (degrees) for every model and attack, all inputs and the sample."""
    rows = []
    for model, attacks in metrics["invariant"].items():
        for attack, c in attacks.items():
            for label, key in (("all", "principal_angles_deg"), ("sample", "principal_angles_deg_sample")):
                angles = list(c.get(key) or [])
                rows.append([display_name(model), display_name(attack), label]
                            + [fmt(a, 2) for a in angles[:5]] + ["n/a"] * (5 - min(len(angles), 5)))
    return markdown_table(["Model", "Attack", "inputs", "θ1", "θ2", "θ3", "θ4", "θ5"], rows)


def universal_table(metrics):
    """Norms at which each universal direction reaches 50%/80% error rate, vs random."""
    rows = []
    for model, entries in metrics["universal"].items():
        for attack, by_m in entries.items():
            curves = [("—", by_m)] if attack == "random" else list(by_m.items())
            for m, c in curves:
                top = max((v for v in c["error_rate"] if v is not None), default=None)
                norms = [fmt(c.get(k), 2) for k in ("eps50", "eps80", "fooling_eps50", "fooling_eps80",
                                                     "ratio_eps50_to_random", "ratio_eps80_to_random")]
                rows.append([display_name(model), display_name(attack), m, fmt(top)] + norms)
    return markdown_table(["Model", "Direction", "m", "max error rate", "ε50", "ε80", "fooling ε50",
                           "fooling ε80", "ε50 / random", "ε80 / random"], rows)


def fgsm_clipping_table(metrics):
    """FGSM vs clipped FGSM: error rate at the reference norm, ε50/ε80, top vector vs constant image."""
    section = metrics.get("fgsm_clipping", {})
    rows = []
    for model, entry in section.get("models", {}).items():
        for attack in ("fgsm", "fgsm_clipped"):
            a = entry.get(attack)
            if a:
                rows.append([display_name(model), display_name(attack), a["m"], fmt(a["error_rate_at_reference"]),
                             fmt(a["eps50"], 2), fmt(a["eps80"], 2), fmt(a["top_vector_constant_cosine"])])
    eps = fmt(section.get("reference_eps"), 1)
    return markdown_table(["Model", "Attack", "m", f"error rate at ‖δ‖₂ = {eps}", "ε50", "ε80",
                           "|cos(v₁, constant image)|"], rows)


def theory_table(metrics):
    """Eigenvalues of M, whether Theorem 1's bound holds, and Theorem 2's distances."""
    rows = []
    for model, attacks in metrics["theory"].items():
        for attack, t in attacks.items():
            t1, t2 = t["theorem1"], t["theorem2"]
            holds = sum(1 for _, measured, bound in t1 if measured is not None and bound is not None
                        and measured >= bound - 1e-9)
            first = f"m={t2[0][0]}: {fmt(t2[0][1])}" if t2 else "n/a"
            last = f"m={t2[-1][0]}: {fmt(t2[-1][1])}" if t2 else "n/a"
            rows.append([display_name(model), display_name(attack), fmt(t["top_eigenvalue"], 4),
                         fmt(t["second_eigenvalue"], 4), fmt(t["eigengap"], 4), f"{holds}/{len(t1)}", first, last])
    return markdown_table(["Model", "Attack", "λ₁", "λ₂", "gap", "Thm 1 bound holds (δ values)",
                           "Thm 2 ‖v−ṽ‖ (smallest m)", "Thm 2 ‖v−ṽ‖ (largest m)"], rows)


def timings_table(metrics):
    """Wall-clock seconds per stage."""
    return markdown_table(["Stage", "seconds"], [[k, fmt(v, 1)] for k, v in metrics["timings_s"].items()])


def all_tables(metrics):
    """Every table of the report by name (also logged to TensorBoard as text)."""
    return {"models": models_table(metrics), "spectrum": spectrum_table(metrics),
            "invariant_dot": invariant_dot_table(metrics),
            "table1_principal_angles": principal_angles_table(metrics),
            "principal_angles_all": principal_angles_all_table(metrics),
            "universal": universal_table(metrics), "fgsm_clipping": fgsm_clipping_table(metrics),
            "theory": theory_table(metrics), "timings": timings_table(metrics)}


# ---- The Reading section and the whole report.md ----

def reading_markdown(claims):
    """The report's "Reading" section: one bullet per claim, every model/attack inline with its verdict."""
    lines = []
    for claim, text in CLAIM_TEXT.items():
        items = [c for c in claims if c["claim"] == claim]
        if items:
            parts = []
            for c in items:
                who = " ".join(display_name(k) for k in (c["model"], c["attack"]) if k)
                verdict = "not measured" if c["agrees"] is None else "agrees" if c["agrees"] else "disagrees"
                extra = "" if c["in_paper"] else ", not in the paper"
                parts.append(f"{who} {c['detail']} ({verdict}{extra})")
            lines.append(f"- **{text}**: " + "; ".join(parts) + ".")
    counted = [c for c in claims if c["in_paper"] and c["claim"] in CLAIM_TEXT and c["agrees"] is not None]
    agreeing = sum(c["agrees"] for c in counted)
    lines.append(f"\nOf {len(counted)} checks on the paper's models and attacks, {agreeing} agree and "
                 f"{len(counted) - agreeing} disagree.")
    return "\n".join(lines)


_INTRO = """\
# Universal attacks on equivariant networks: reproduction report

Every number below is measured on this run (also in `metrics.json`); the paper's stated numbers and
claims are quoted beside them. Wording: **error rate** is the fraction of perturbed test inputs
misclassified with respect to the true labels (what the paper calls the *fooling rate*); **fooling
rate** here is the fraction whose prediction changed from the clean prediction (dotted curves)."""

_SECTIONS = (
    ("1. Spectrum of attack directions",
     "Paper (Sec. 3, Fig. 1): \"the top 5 or less than 1% in number of the squared singular values [of the "
     "gradient directions] add up to more than 10% of the overall sum\", for StdCNN, GCNN and RotEqNet; "
     "Figs. 2a-4a: the singular values drop quickly for gradient, FGSM and DeepFool, on a 500 sample as on all "
     "10,000 inputs.", ["spectrum"], ["fig1", "spectrum/"]),
    ("2. Adversarial vs invariant directions",
     "Paper (Sec. 3, Figs. 2b-4b): the top-5 singular vectors of adversarial and of invariant (small-rotation "
     "difference) directions are nearly orthogonal, \"their average dot product is less than 0.07\", also on a "
     "500 sample. Table 1 (gradients, principal angles in degrees): StdCNN 89.82, 88.07, 84.77, 81.22, 78.85; "
     "GCNN 89.07, 88.28, 87.45, 84.27, 68.78; RotEqNet 89.76, 88.89, 85.61, 82.28, 68.97.",
     ["invariant_dot", "table1_principal_angles", "principal_angles_all"], ["invariant_dot/"]),
    ("3. Top singular vectors",
     "Paper (Figs. 7-16): the top-5 singular vectors of the invariant and attack directions have visible "
     "structure (steerable-filter-like). Blue negative, red positive, white 0; a singular vector's sign is "
     "arbitrary.", [], ["vectors/"]),
    ("4. Universal perturbations",
     "Paper (Sec. 4, Figs. 5-6): a perturbation along the top singular vector \"fool[s] 80-90% of test inputs\" "
     "at small norm; from a sample of 100 inputs (1%) it still fools \"roughly 80%\". ε50/ε80: smallest L2 norm "
     "at which the error rate reaches 50%/80% (n/a: not reached on the grid); m: number of inputs whose "
     "directions gave the singular vector (mean over seeds for m below the test-set size).",
     ["universal"], ["universal/"]),
    ("5. FGSM vs clipped FGSM",
     "Not in the paper. `fgsm` is the raw step ε·sign(∇ₓJ); `fgsm_clipped` is clip(x + ε·sign(∇ₓJ), 0, 1) − x. "
     "On MNIST most pixels are 0, so clipping removes every negative step on the background (and every "
     "positive step on saturated strokes): the clipped directions are non-negative on the background, so "
     "their top singular vector is expected to be close to a constant image, a poor universal direction, "
     "while the unclipped one keeps the gradient's sign pattern. The last column measures |cos| between the "
     "top singular vector and the constant image (1 = constant).",
     ["fgsm_clipping"], ["fgsm_clipping", "vectors/*/fgsm", "vectors/*/fgsm_clipped"]),
    ("6. Theory (Theorems 1 and 2)",
     "Paper (Sec. 5): with λ the top eigenvalue of M = E[a aᵀ/‖a‖²] and v its eigenvector, Theorem 1 gives "
     "Pr(|⟨a/‖a‖, v⟩| ≥ δ) ≥ (λ − δ²)/(1 − δ²); Theorem 2: from m = O(ε⁻² d log d) samples, "
     "‖v − ṽ‖ ≤ ε/(γ − ε) for an eigengap γ > ε.", ["theory"], ["theory/"]),
    ("7. Training and timings", "Training and validation curves of the exported models.", ["timings"], ["training"]),
)


# Where each of this report's figures sits in the paper (Fig. 7, the invariant
# directions, names no model). Models the paper lacks get no reference.
PAPER_FIGURES = {
    "stdcnn": {"spectrum": "2a", "invariant_dot": "2b", "universal": "5", "invariant": "7", "gradient": "8",
               "fgsm": "9", "deepfool": "10"},
    "gcnn": {"spectrum": "3a", "invariant_dot": "3b", "universal": "6", "invariant": "7", "gradient": "11",
             "fgsm": "12", "deepfool": "13"},
    "roteqnet": {"spectrum": "4a", "invariant_dot": "4b", "invariant": "7", "gradient": "14", "fgsm": "15",
                 "deepfool": "16"},
}


def _caption(key):
    kind, _, rest = key.partition("/")
    model, _, name = rest.partition("/")
    ref = "1" if key == "fig1" else PAPER_FIGURES.get(model, {}).get(name or kind)
    words = {"fig1": "top-5 spectrum fraction of gradient directions", "spectrum": "singular values",
             "invariant_dot": "adversarial vs invariant singular vectors", "universal": "universal perturbation",
             "theory": "Theorems 1 and 2", "vectors": f"top-5 singular vectors, {display_name(name)}",
             "fgsm_clipping": "FGSM vs clipped FGSM", "training": "training curves"}[kind]
    who = f"{display_name(model)}: " if model else ""
    return f"{who}{words}" + (f" (paper Fig. {ref})" if ref else "")


def _figure_lines(figure_paths, prefixes, output_dir):
    lines = []
    for key, path in figure_paths.items():
        kind, _, rest = key.partition("/")
        name = rest.partition("/")[2]
        if any(key == p or (p.endswith("/") and key.startswith(p)) or p == f"{kind}/*/{name}" for p in prefixes):
            rel = os.path.relpath(path, output_dir).replace(os.sep, "/")
            lines += [f"![{_caption(key)}]({rel})", ""]
    return lines


def _clipping_lines(metrics):
    """One measured sentence per model comparing FGSM and clipped FGSM."""
    eps = fmt(metrics["fgsm_clipping"]["reference_eps"], 1)
    lines = []
    for model, entry in metrics["fgsm_clipping"]["models"].items():
        if "fgsm" in entry and "fgsm_clipped" in entry:
            f, c = entry["fgsm"], entry["fgsm_clipped"]

            def pair(key, digits=3):
                return f"{fmt(f[key], digits)} vs {fmt(c[key], digits)}"

            lines.append(f"- {display_name(model)} (FGSM vs clipped): error rate at ‖δ‖₂ = {eps} "
                         f"{pair('error_rate_at_reference')}; ε50 {pair('eps50', 2)}; ε80 {pair('eps80', 2)}; "
                         f"|cos(v₁, constant)| {pair('top_vector_constant_cosine')}.")
    return lines + [""] if lines else []


def _subset_lines(metrics):
    """Says which models were attacked or evaluated on fewer inputs than the rest."""
    lines = []
    for model, info in metrics["models"].items():
        n_test, parts = info.get("n_test"), []
        for attack, n in (info.get("directions_n") or {}).items():
            if n_test and n is not None and n < info.get("analysis_n", n_test):
                parts.append(f"{display_name(attack)} directions were collected on a seeded random subset of "
                             f"{fmt(n)} test inputs (its m = all is m = {fmt(n)}; its comparison with the invariant "
                             f"directions uses those of the same inputs)")
        n_eval = info.get("universal_n_eval")
        if n_test and n_eval is not None and n_eval < n_test:
            parts.append(f"its universal-attack curves are error rates on a seeded random subset of {fmt(n_eval)} "
                         f"of the {fmt(n_test)} test inputs")
        if parts:
            lines += [f"**{display_name(model)}:** " + "; ".join(parts) + " (to keep the run within its time "
                      "budget; see `DEFAULT_MODEL_SETTINGS` in `keras_uap/pipelines/study.py`).", ""]
    return lines


def report_markdown(metrics, markdown_tables, reading, figure_paths, output_dir):
    """The whole `report.md`: intro, models, reading, then one section per part of the paper."""
    data = metrics["data"]
    sizes = "; ".join(f"{display_name(m)}: directions of {fmt(i.get('analysis_n'))} test inputs, sample of "
                      f"{fmt(i.get('analysis_sample_size'))}, invariant directions from "
                      f"{fmt(i.get('invariant_angle_deg'), 1)}° rotations" for m, i in metrics["models"].items())
    lines = [_INTRO, "", "## Models and data", "", markdown_tables["models"], "",
             f"Rotated test set: `{data['test_path']}` ({fmt(data['n_test'])} inputs). Analysis (\"all\" and "
             f"\"sample\" below; the paper's are 10,000 and 500): {sizes}.", ""] + _subset_lines(metrics) + [
             "## Reading", "", "Each claim (in bold, with the paper's threshold) checked against this run's numbers.",
             "", reading, ""]
    for title, claim, table_names, prefixes in _SECTIONS:
        lines += [f"## {title}", "", claim, ""]
        if table_names == ["fgsm_clipping"]:
            lines += _clipping_lines(metrics)
        for name in table_names:
            caption = {"table1_principal_angles": "Table 1 (gradient directions, all inputs):",
                       "timings": "Wall-clock time per stage:"}.get(name)
            lines += ([caption, ""] if caption else []) + [markdown_tables[name], ""]
        lines += _figure_lines(figure_paths, prefixes, output_dir)
    return "\n".join(lines)
