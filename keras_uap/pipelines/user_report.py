"""The report of a user study (`keras_uap.pipelines.user_study`): `metrics.json`,
`report.md` and up to five figures, from the artifacts of the universal
stage and, where they ran, the analysis and comparison stages.

The per-model parts are the paper report's (`keras_uap.report`), for one
model: its figures (`report.figures`), its per-model tables (`report.tables`:
spectrum, universal curves, theory, timings), its spectrum entries
(`report.build.spectrum_entry`) and its comparison tables
(`report.comparison`). This module gathers the study's metrics, and adds
what only the study shows (each sample's spectrum). Figures:
- `singular_values.png` (with the analysis): the singular values of each
  attack's unit directions, all attacked inputs and the analysis sample
  (`singular_value_spectra`);
- `perturbations.png`: each SVD perturbation as an image (`perturbation_images`);
- `curves.png`: error and fooling rates against the perturbation's L2 norm,
  with the random-direction baseline (`universal_curves`);
- `sample_spectra.png` (with the samples' spectra recorded): the top
  singular values of each sample a perturbation was built from, per m
  (`sample_spectra`);
- `linf_curves.png` (with the L-infinity curves): the same rates of each
  perturbation's sign against the L-infinity budget, beside random signs
  (`universal_curves`).
"""

import json
import os

import numpy as np

from keras_uap.pipelines.runner import read_json
from keras_uap.report import figures as report_figures
from keras_uap.report import tables
from keras_uap.report.build import spectrum_entry
from keras_uap.report.comparison import comparison_metrics, l2_table, linf_table, verdict_lines
from keras_uap.report.tables import display_name, fmt, markdown_table

__all__ = ["build_user_report"]


def _by_m(entries):
    return sorted(entries.items(), key=lambda kv: int(kv[0]))


def _file_name(universal, attack, m):
    """The universal stage's perturbation file of `attack` and `m`."""
    return f"{universal['model']}-{attack}-m{m}.npy"


def _sample_spectra(curves):
    """{attack: {m: top singular values}} of the samples whose spectra the
    universal stage recorded (`curves`: attack -> m -> curve, and "random")."""
    found = {a: {m: c["singular_values"] for m, c in by_m.items() if "singular_values" in c}
             for a, by_m in curves.items() if a != "random"}
    return {a: by_m for a, by_m in found.items() if by_m}


def _metrics(data_summary, universal, analysis, comparison, timings, sources, figures):
    clean = universal["clean_error_rate"]
    metrics = {
        "model": {"name": universal["model"], "path": sources.get("model"),
                  "input_shape": data_summary["input_shape"], "num_classes": data_summary["num_classes"],
                  "output": data_summary["output"], "clean_error_rate": clean,
                  "clean_accuracy": None if clean is None else 1.0 - clean},
        "data": {"source": sources.get("data"), "split": sources.get("split"), "n": data_summary["n"],
                 "pixel_range": data_summary["pixel_range"], "label_counts": data_summary["label_counts"]},
        "eps_grid": [0.0, *universal["eps_grid"]],
        "seed": _run_seed(universal),
    }
    if analysis is not None:
        metrics["spectrum"] = {a: {"n": e["n"], **spectrum_entry(e)} for a, e in analysis["spectrum"].items()}
        metrics["theory"] = analysis["theory"]
    metrics["universal"] = {**universal["curves"], "random": universal["random"]}
    if "linf" in universal:
        metrics["linf_grid"] = [0.0, *universal["linf"]["budgets"]]
        metrics["linf"] = {**universal["linf"]["curves"], "random": universal["linf"]["random"]}
    if comparison is not None:
        metrics["comparison"] = {key: comparison[key] for key in ("build_eps", "linf_build_budget", "max_passes",
                                                                  "delta", "l2", "linf")}
    metrics["perturbations"] = {f"{a}-m{m}": f"perturbations/{_file_name(universal, a, m)}"
                                for a, by_m in universal["curves"].items() for m, _ in _by_m(by_m)}
    metrics["figures"] = figures
    metrics["timings"] = {"stages": timings}  # wall clock, apart from the numbers a seed fixes
    return metrics


def _run_seed(universal):
    """The run's seed: the first of every curve's sample seeds."""
    return next(c["seeds"][0] for by_m in universal["curves"].values() for c in by_m.values())


def _analysis_lines(metrics):
    n = sorted({e["n"] for e in metrics["spectrum"].values()})
    return [
        "## Spectrum of the attack directions",
        "",
        f"Fraction of the squared singular values of the unit-normalised directions (all {', '.join(map(str, n))} "
        "attacked inputs, and the analysis sample) held by the top k.",
        "",
        markdown_table(tables.SPECTRUM_COLUMNS, tables.spectrum_rows(metrics["spectrum"])),
        "",
        "## Theory checks",
        "",
        "The top eigenvalues λ₁, λ₂ of M = E[a aᵀ/‖a‖²] and their gap γ; how many of Theorem 1's bounds "
        "Pr(|⟨a/‖a‖, v⟩| ≥ δ) ≥ (λ − δ²)/(1 − δ²) hold, on the rows that gave λ and v (a sanity check) and on a "
        "held-out half; then Theorem 2 per sample size m: ε = ‖M − M̃‖₂, the bound ε/(γ − ε) on ‖v − ṽ‖ (vacuous "
        "where γ ≤ ε) beside the measured distance.",
        "",
        markdown_table(tables.THEORY_COLUMNS, tables.theory_rows(metrics["theory"])),
        "",
        markdown_table(tables.THEOREM2_COLUMNS, tables.theorem2_rows(metrics["theory"])),
        "",
    ]


def _sample_spectra_lines(spectra):
    rows = []
    for attack, by_m in spectra.items():
        for m, s in _by_m(by_m):
            eigenvalues = [float(v) ** 2 / int(m) for v in s]
            rows.append([display_name(attack), m, fmt(eigenvalues[0]),
                         fmt(s[1] / s[0] if len(s) > 1 and s[0] else None), fmt(sum(eigenvalues[:5])),
                         fmt(sum(eigenvalues[:10]))])
    return [
        "## Singular values of each sample",
        "",
        "The spectrum of the m unit-normalised directions each perturbation is the top singular vector of: "
        "λ₁ = σ₁²/m (the top eigenvalue of the sample's M = (1/m) Σ a aᵀ/‖a‖²), σ₂/σ₁, and the share of the "
        "squared spectrum (total m when no direction vanished) held by the top 5 and top 10. "
        "`metrics.json` keeps each sample's top singular values (`universal.<attack>.<m>.singular_values`).",
        "",
        markdown_table(["Attack", "m", "λ₁", "σ₂/σ₁", "top-5", "top-10"], rows),
        "",
    ]


def _comparison_lines(metrics):
    """The comparison's L2 table with its cost verdict, and its L-infinity
    table: the paper report's tables of this one model."""
    comparison = metrics["comparison"]
    section = comparison_metrics({metrics["model"]["name"]: comparison})
    return [
        "## Against other universal perturbations",
        "",
        "Every method built from the same sample of m inputs (the iterative UAP at L2 radius "
        f"{fmt(comparison['build_eps'])}, at most {comparison['max_passes']} passes), with its cost, and the "
        "L2 norm at which its error rate reaches 50%/80% (n/a: never on this grid).",
        "",
        l2_table(section),
        "",
        *verdict_lines(section),
        "",
        "## Error rate under an L-infinity budget",
        "",
        "Each L2 direction's sign (the L-infinity step that best aligns with it; largest sample) beside the "
        f"iterative UAP rebuilt in the L-infinity ball of radius {fmt(comparison['linf_build_budget'])}.",
        "",
        linf_table(section),
        "",
    ]


def _markdown(metrics):
    model, data = metrics["model"], metrics["data"]
    lines = [
        "# Universal perturbations of your model",
        "",
        f"Model `{model['path']}` ({'x'.join(map(str, model['input_shape']))} inputs, {model['num_classes']} "
        f"classes, outputs {model['output']}); data `{data['source']}` (split {data['split']}, {data['n']} "
        f"inputs). Clean accuracy {fmt(model['clean_accuracy'], 4)}.",
        "",
    ]
    if "spectrum" in metrics:
        lines += _analysis_lines(metrics)
    lines += [
        "## Error rate against the L2 norm of the perturbation",
        "",
        "Over the L2 norms " + ", ".join(f"{e:g}" for e in metrics["eps_grid"]) + ": ε50/ε80, the norm where the "
        "error rate (perturbed inputs misclassified) reaches 50%/80%; fooling ε50/ε80, where the prediction "
        "changed for 50%/80% of them (n/a: never on this grid); and their ratios to the random directions'. The "
        "curves are in `figures/curves.png` and `metrics.json`.",
        "",
        markdown_table(tables.UNIVERSAL_COLUMNS, tables.universal_rows(metrics["universal"])),
        "",
    ]
    spectra = _sample_spectra(metrics["universal"])
    if spectra:
        lines += _sample_spectra_lines(spectra)
    if "linf" in metrics:
        lines += [
            "## Error rate against the L-infinity norm of the perturbation",
            "",
            "Each perturbation's sign (`sign(v)`, the L-infinity step that best aligns with v) over the "
            "L-infinity budgets " + ", ".join(f"{e:g}" for e in metrics["linf_grid"]) + ", beside the signs "
            "of the random directions; ε50/ε80 are budgets.",
            "",
            markdown_table(tables.UNIVERSAL_COLUMNS, tables.universal_rows(metrics["linf"])),
            "",
        ]
    if "comparison" in metrics:
        lines += _comparison_lines(metrics)
    lines += ["## Figures", ""] + [f"![{os.path.splitext(os.path.basename(p))[0]}]({p})" for p in metrics["figures"]]
    lines += ["", "## Using a perturbation", "",
              "`<run-dir>/perturbations/<model>-<attack>-m<m>.npy` (`metrics.json`'s `perturbations`) has the shape "
              "of one input and unit L2 norm. At L2 norm eps: `np.clip(x + eps * v, clip_min, clip_max)`; at "
              "L-infinity norm eps: `np.clip(x + eps * np.sign(v), clip_min, clip_max)`.", ""]
    if metrics["timings"]["stages"]:
        lines += ["## Stage times", "", tables.timings_table(metrics), ""]
    return "\n".join(lines)


def _figures(figures_dir, universal, analysis, perturbations):
    """Draws the report's figures; returns their paths."""
    def out(name):
        return os.path.join(figures_dir, f"{name}.png")

    paths = []
    if analysis is not None:
        spectra = {a: (e["singular_values"], e["singular_values_sample"]) for a, e in analysis["spectrum"].items()}
        paths.append(report_figures.singular_value_spectra(out("singular_values"),
                                                           "Singular values of the attack directions", spectra))
    paths.append(report_figures.perturbation_images(out("perturbations"),
                                                    "SVD universal perturbations (mid-grey = 0)", perturbations))
    paths.append(report_figures.universal_curves(out("curves"), "Universal perturbation along the top singular "
                                                 "vector", universal["curves"], universal["random"],
                                                 universal["clean_error_rate"]))
    spectra = _sample_spectra(universal["curves"])
    if spectra:
        paths.append(report_figures.sample_spectra(out("sample_spectra"), "Top singular values of each sample",
                                                   spectra))
    if "linf" in universal:
        paths.append(report_figures.universal_curves(
            out("linf_curves"), "The perturbations' signs against the L-infinity budget", universal["linf"]["curves"],
            universal["linf"]["random"], universal["clean_error_rate"], norm_label="‖δ‖∞"))
    return paths


def build_user_report(output_dir, data_summary, universal_dir, analysis_file, comparison_file, timings, sources):
    """Writes `metrics.json`, `report.md` and `figures/` into `output_dir`; returns the metrics.

    Args:
        output_dir: the report's directory.
        data_summary: the `user_data` stage's `summary.json` contents.
        universal_dir: the universal stage's output directory.
        analysis_file, comparison_file: those stages' `analysis.json` and
            `comparison.json`, or None where the stage was switched off.
        timings: stage -> seconds.
        sources: "model", "data" and "split" as the user gave them.
    """
    universal = read_json(os.path.join(universal_dir, "universal.json"))
    analysis, comparison = read_json(analysis_file), read_json(comparison_file)
    perturbations = {a: {m: np.load(os.path.join(universal_dir, "perturbations", _file_name(universal, a, m)))
                         for m in by_m} for a, by_m in universal["curves"].items()}
    paths = _figures(os.path.join(output_dir, "figures"), universal, analysis, perturbations)
    metrics = _metrics(data_summary, universal, analysis, comparison, timings, sources,
                       [f"figures/{os.path.basename(path)}" for path in paths])
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    with open(os.path.join(output_dir, "report.md"), "w") as f:
        f.write(_markdown(metrics))
    return metrics
