"""The report's markdown: tables and `report.md` itself, with the paper's
numbers beside this run's (the Reading section, the claims judged, comes from
`keras_uap.report.claims`).

Everything here reads the plain `metrics` dict that `build_report` assembles
(never the raw artifacts), so the report shows exactly what `metrics.json`
holds. Missing or undefined values (JSON null) print as "n/a".
"""

import math
import os

from keras_uap.method import ATTACK_NAMES, PAPER_ATTACKS

__all__ = ["MODEL_ORDER", "ATTACK_ORDER", "PAPER_ATTACKS", "PAPER_PRINCIPAL_ANGLES_DEG", "PUBLISHED_MNIST_ROT_ERROR",
           "PAPER_FIGURES", "SPECTRUM_COLUMNS", "UNIVERSAL_COLUMNS", "THEORY_COLUMNS", "THEOREM2_COLUMNS",
           "display_name", "fmt", "markdown_table", "models_table", "spectrum_rows", "spectrum_table",
           "invariant_dot_table", "principal_angles_table", "principal_angles_all_table", "universal_rows",
           "universal_table", "sign_table", "fgsm_clipping_table", "theory_rows", "theory_table", "theorem2_rows",
           "theorem2_table", "timings_table", "all_tables", "report_markdown"]

# Paper order, so that tables, panels and legends read like the paper's; others follow sorted.
MODEL_ORDER = ("stdcnn", "gcnn", "roteqnet")
ATTACK_ORDER = ATTACK_NAMES  # the registry's order

# Table 1 of the paper: principal angles (degrees, descending) between the top-5
# singular subspaces of gradient directions and of invariant (small rotation) directions.
PAPER_PRINCIPAL_ANGLES_DEG = {
    "stdcnn": (89.82170934, 88.06580815, 84.76831292, 81.22444162, 78.85267548),
    "gcnn": (89.06822425, 88.27986252, 87.45134508, 84.26710498, 68.77651938),
    "roteqnet": (89.75561818, 88.88988678, 85.60567329, 82.28177397, 68.96832307),
}

# Published test errors on MNIST-rot (12,000 training images of rotated digits, 50,000
# test), beside which the models table sets this run's rotated-MNIST errors.
PUBLISHED_MNIST_ROT_ERROR = {"gcnn": (0.0228, "P4CNN, Cohen & Welling (2016)"),
                             "roteqnet": (0.0109, "Marcos et al. (2017)")}
MNIST_ROT_PROTOCOL = (
    "Published errors are on MNIST-rot (12,000 training images, 50,000 test images, each rotated once); this "
    "study trains on 55,000 MNIST images with random rotations in [-180°, 180°] as augmentation and tests on "
    "the 10,000 MNIST test images rotated at random, as the paper's appendix says, so the two are not the same "
    "protocol.")

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
    """Test accuracy and error, the published MNIST-rot error, clean error rate and export path per model."""
    rows = []
    for m, info in metrics["models"].items():
        accuracy = info.get("test_accuracy")
        published = PUBLISHED_MNIST_ROT_ERROR.get(m)
        rows.append([display_name(m), fmt(accuracy, 4), fmt(None if accuracy is None else 1.0 - accuracy, 4),
                     f"{published[0]:.2%} ({published[1]})" if published else "—",
                     fmt(info.get("clean_error_rate"), 4), fmt(info.get("best_val_accuracy"), 4),
                     fmt(info.get("epochs")), f"`{info.get('export_path')}`"])
    return markdown_table(["Model", "test accuracy", "test error (rotated MNIST)", "published MNIST-rot error",
                           "clean error rate (universal stage)", "best val. accuracy", "epochs", "export"], rows)


# The per-model tables (spectrum, universal curves, theory) are one model's
# rows under these columns: the paper's report prepends a "Model" column,
# the user study's (`keras_uap.pipelines.user_report`) shows its one model's.
SPECTRUM_COLUMNS = ["Attack", "top-1", "top-5", "top-10", "top-5 (sample)"]
UNIVERSAL_COLUMNS = ["Direction", "m", "max error rate", "ε50", "ε80", "fooling ε50", "fooling ε80",
                     "ε50 / random", "ε80 / random"]
THEORY_COLUMNS = ["Attack", "λ₁", "λ₂", "gap γ", "Thm 1 bound holds, in sample (sanity)",
                  "Thm 1 bound holds, held-out half"]
THEOREM2_COLUMNS = ["Attack", "m", "ε", "γ", "bound", "‖v − ṽ‖ (sign-aligned)", "m where ε < γ (ε ∝ 1/√m)"]


def _per_model(section, rows_of, columns):
    """A table of every model's rows (`rows_of(entries)`), the model first."""
    return markdown_table(["Model", *columns], [[display_name(model), *row] for model, entries in section.items()
                                                for row in rows_of(entries)])


def spectrum_rows(attacks):
    """One model's spectrum rows: per attack, the fractions of the total
    squared spectrum in the top 1/5/10 singular values (and top 5 of the sample)."""
    return [[display_name(attack), fmt(s["top1_fraction"]), fmt(s["top5_fraction"]), fmt(s["top10_fraction"]),
             fmt(s["top5_fraction_sample"])] for attack, s in attacks.items()]


def spectrum_table(metrics):
    """Fractions of the total squared spectrum in the top 1/5/10 singular values."""
    return _per_model(metrics["spectrum"], spectrum_rows, SPECTRUM_COLUMNS)


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


def universal_rows(entries):
    """One model's universal-curve rows (attack -> m -> curve, and "random"
    -> its curve): the norms at which each direction reaches 50%/80% error
    and fooling rate, and their ratios to random's."""
    rows = []
    for attack, by_m in entries.items():
        curves = [("—", by_m)] if attack == "random" else list(by_m.items())
        for m, c in curves:
            top = max((v for v in c["error_rate"] if v is not None), default=None)
            norms = [fmt(c.get(k), 2) for k in ("eps50", "eps80", "fooling_eps50", "fooling_eps80",
                                                 "ratio_eps50_to_random", "ratio_eps80_to_random")]
            rows.append([display_name(attack), m, fmt(top)] + norms)
    return rows


def universal_table(metrics):
    """Norms at which each universal direction reaches 50%/80% error rate, vs random."""
    return _per_model(metrics["universal"], universal_rows, UNIVERSAL_COLUMNS)


def sign_table(metrics):
    """The full set's singular vector with the sign kept against the sign rejected."""
    rows = []
    for model, entries in metrics["universal"].items():
        for attack, by_m in entries.items():
            for m, c in by_m.items() if attack != "random" else ():
                other = c.get("other_sign")
                if other:
                    rows.append([display_name(model), display_name(attack), m]
                                + [fmt(c.get(k), 2) for k in ("eps50", "eps80")]
                                + [fmt(other.get(k), 2) for k in ("eps50", "eps80")])
    return markdown_table(["Model", "Direction", "m", "ε50 kept", "ε80 kept", "ε50 other sign", "ε80 other sign"],
                          rows)


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


def theory_rows(attacks):
    """One model's theory rows: per attack, the eigenvalues of M and
    Theorem 1 in and out of sample."""
    rows = []
    for attack, t in attacks.items():
        held_out = (t.get("theorem1_held_out") or {}).get("rows") or []
        rows.append([display_name(attack), fmt(t["top_eigenvalue"], 4), fmt(t["second_eigenvalue"], 4),
                     fmt(t["eigengap"], 4), _bound_count(t["theorem1"]), _bound_count(held_out)])
    return rows


def theory_table(metrics):
    """Eigenvalues of M and Theorem 1 in and out of sample."""
    return _per_model(metrics["theory"], theory_rows, THEORY_COLUMNS)


def _bound_count(rows):
    holds = sum(1 for _, measured, bound in rows if measured is not None and bound is not None
                and measured >= bound - 1e-9)
    return f"{holds}/{len(rows)}"


def theorem2_rows(attacks):
    """One model's Theorem 2 rows: per attack and sample size, ε = ‖M − M̃‖₂,
    the gap, the bound ε/(γ − ε) and the measured ‖v − ṽ‖."""
    rows = []
    for attack, t in attacks.items():
        for r in t.get("theorem2") or []:
            bound = "vacuous (γ ≤ ε)" if r["bound"] is None else fmt(r["bound"])
            rows.append([display_name(attack), r["m"], fmt(r["epsilon"], 4), fmt(r["gap"], 4), bound,
                         fmt(r["distance"]), fmt(t.get("theorem2_nonvacuous_m"))])
    return rows


def theorem2_table(metrics):
    """Theorem 2 per sample size: ε = ‖M − M̃‖₂, the gap, the bound ε/(γ − ε) and the measured ‖v − ṽ‖."""
    return _per_model(metrics["theory"], theorem2_rows, THEOREM2_COLUMNS)


def timings_table(metrics):
    """Wall-clock seconds per stage."""
    return markdown_table(["Stage", "seconds"], [[k, fmt(v, 1)] for k, v in metrics["timings"]["stages"].items()])


def all_tables(metrics):
    """Every table of the report by name (also logged to TensorBoard as text)."""
    return {"models": models_table(metrics), "spectrum": spectrum_table(metrics),
            "invariant_dot": invariant_dot_table(metrics),
            "table1_principal_angles": principal_angles_table(metrics),
            "principal_angles_all": principal_angles_all_table(metrics),
            "universal": universal_table(metrics), "sign": sign_table(metrics),
            "fgsm_clipping": fgsm_clipping_table(metrics),
            "theory": theory_table(metrics), "theorem2": theorem2_table(metrics), "timings": timings_table(metrics)}


# ---- The whole report.md ----

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
     "directions gave the singular vector (mean over seeds for m below the test-set size). An SVD fixes the "
     "vector only up to sign: the sign kept is the one whose error-rate curve on the m sampled inputs (at most "
     "1,000 of them) has the larger area over this grid of norms, so no test-set curve picks it. The second "
     "table sets the full set's vector beside the sign the rule rejected (dashed in the figures).",
     ["universal", "sign"], ["universal/"]),
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
     "‖v − ṽ‖ ≤ ε/(γ − ε) for an eigengap γ > ε. Theorem 1 measured on the rows that gave λ and v holds for "
     "any finite set of rows, so it is shown beside the same bound measured on a held-out half. Theorem 2 is "
     "evaluated as stated: ε is the spectral norm of M − M̃ for one seeded sample of each size m; the bound "
     "is vacuous where γ ≤ ε; the last column extrapolates ε ∝ 1/√m to the m where it would not be.",
     ["theory", "theorem2"], ["theory/"]),
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
    lines = [_INTRO, "", "## Models and data", "", markdown_tables["models"], "", MNIST_ROT_PROTOCOL, "",
             f"Rotated test set: `{data['test_path']}` ({fmt(data['n_test'])} inputs). Analysis (\"all\" and "
             f"\"sample\" below; the paper's are 10,000 and 500): {sizes}.", ""] + _subset_lines(metrics) + [
             "## Reading", "", reading, ""]
    if "seeds" in markdown_tables:  # run-all --training-seeds: what moved between the models' seeds
        lines += [markdown_tables["seeds"], ""]
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
