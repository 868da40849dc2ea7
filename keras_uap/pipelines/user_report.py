"""The report of a user study (`keras_uap.pipelines.user_study`): `metrics.json`,
`report.md` and up to five figures, from the artifacts of the universal
stage and, where they ran, the analysis and comparison stages.

Figures use `matplotlib.figure.Figure` directly (the Agg canvas, no pyplot
state), as `keras_uap.report.figures` does:
- `singular_values.png` (with the analysis): the singular values of each
  attack's unit directions over every attacked input, divided by their
  root total square;
- `perturbations.png`: each SVD perturbation as an image (see `display_image`);
- `curves.png`: error and fooling rates against the perturbation norm, with
  the random-direction baseline;
- `sample_spectra.png` (with the samples' spectra recorded): the top
  singular values of each sample a perturbation was built from, per m
  (`keras_uap.report.figures.sample_spectra`);
- `linf_curves.png` (with the L-infinity curves): the same rates of each
  perturbation's sign against the L-infinity budget, beside random signs
  (`keras_uap.report.figures.universal_curves`).
"""

import json
import os

import numpy as np
from matplotlib.figure import Figure

from keras_uap.report.figures import sample_spectra, universal_curves
from keras_uap.report.tables import display_name, fmt, markdown_table

__all__ = ["build_user_report", "display_image", "singular_values_figure", "perturbations_figure", "curves_figure"]

DPI = 110
_M_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink")


def display_image(v):
    """An (H, W, C) perturbation as something `imshow` draws: (H, W, 3) RGB in
    [0, 1] for C = 3, else an (H, W) map in [0, 1] (the only channel, or the
    channel mean) for a grey colormap.

    The values are rescaled symmetrically, 0.5 + 0.5 * v / max|v|, so that
    mid-grey is zero and the sign of each pixel stays visible.
    """
    v = np.asarray(v, dtype=np.float64)
    if v.ndim == 2:
        v = v[..., None]
    if v.ndim != 3:
        raise ValueError(f"`v` must have shape (H, W) or (H, W, C). Received: shape={v.shape}")
    if v.shape[-1] != 3:
        v = v.mean(axis=-1)
    limit = float(np.max(np.abs(v))) or 1.0
    return np.clip(0.5 + 0.5 * v / limit, 0.0, 1.0)


def _save(fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _by_m(entries):
    return sorted(entries.items(), key=lambda kv: int(kv[0]))


def singular_values_figure(path, spectrum):
    """One panel per attack: sigma_i / sqrt(sum sigma^2) against i, from the
    analysis stage's `spectrum` ({attack: {"singular_values", "n", ...}})."""
    fig = Figure(figsize=(4.0 * len(spectrum), 3.2))
    axes = fig.subplots(1, len(spectrum), squeeze=False)[0]
    for ax, (attack, entry) in zip(axes, spectrum.items()):
        s = np.asarray(entry["singular_values"], dtype=float)
        total = np.sqrt(np.sum(s ** 2)) or 1.0
        ax.plot(np.arange(1, len(s) + 1), s / total, ".-", ms=3, color=_M_COLOURS[0], label=f"n={entry['n']}")
        ax.set_xscale("log")
        ax.set_title(display_name(attack))
        ax.set_xlabel("index i")
    axes[0].set_ylabel("σᵢ / √Σσ²")
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def perturbations_figure(path, perturbations):
    """A grid of images, one row per attack and one column per sample size."""
    attacks = list(perturbations)
    columns = max(len(by_m) for by_m in perturbations.values())
    fig = Figure(figsize=(2.2 * columns, 2.4 * len(attacks)))
    axes = fig.subplots(len(attacks), columns, squeeze=False)
    for row, attack in zip(axes, attacks):
        for ax in row:
            ax.set_axis_off()
        for ax, (m, v) in zip(row, _by_m(perturbations[attack])):
            image = display_image(v)
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0,
                      interpolation="nearest")
            ax.set_title(f"{display_name(attack)}, m={m}", fontsize=9)
    fig.suptitle("SVD universal perturbations (mid-grey = 0)", fontsize=10)
    return _save(fig, path)


def curves_figure(path, curves, random, clean_error_rate=None):
    """One panel per attack: error rate (solid) and fooling rate (dotted) against the norm."""
    fig = Figure(figsize=(4.0 * len(curves), 3.2))
    axes = fig.subplots(1, len(curves), squeeze=False, sharey=True)[0]
    for ax, (attack, by_m) in zip(axes, curves.items()):
        for i, (m, c) in enumerate(_by_m(by_m)):
            colour = _M_COLOURS[i % len(_M_COLOURS)]
            ax.plot(c["eps"], c["error_rate"], "-", color=colour, label=f"SVD, m={m}")
            ax.plot(c["eps"], c["fooling_rate"], ":", color=colour, lw=1)
        ax.plot(random["eps"], random["error_rate"], "-", color="0.4", label="random")
        ax.plot(random["eps"], random["fooling_rate"], ":", color="0.4", lw=1)
        if clean_error_rate is not None:
            ax.axhline(clean_error_rate, color="0.6", ls="-.", lw=0.8, label="clean")
        ax.set_title(display_name(attack))
        ax.set_xlabel("‖δ‖₂")
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("error rate (solid), prediction changed (dotted)")
    axes[0].legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def _file_name(universal, attack, m):
    """The universal stage's perturbation file of `attack` and `m`."""
    return f"{universal['model']}-{attack}-m{m}.npy"


def _spectrum_and_theory(analysis):
    """The analysis stage's per-attack spectrum and theory checks, or ({}, {})."""
    if analysis is None:
        return {}, {}
    spectrum = {a: {"n": e["n"], "singular_values": e["singular_values"],
                    **{f"top{k}_fraction": f for k, f in e["fractions"].items()}}
                for a, e in analysis["spectrum"].items()}
    return spectrum, analysis["theory"]


def _metrics(data_summary, universal, analysis, comparison, timings, sources, figures):
    clean = universal["clean_error_rate"]
    spectrum, theory = _spectrum_and_theory(analysis)
    metrics = {
        "model": {"path": sources.get("model"), "input_shape": data_summary["input_shape"],
                  "num_classes": data_summary["num_classes"], "output": data_summary["output"],
                  "clean_error_rate": clean, "clean_accuracy": None if clean is None else 1.0 - clean},
        "data": {"source": sources.get("data"), "split": sources.get("split"), "n": data_summary["n"],
                 "pixel_range": data_summary["pixel_range"], "label_counts": data_summary["label_counts"]},
        "eps_grid": [0.0, *universal["eps_grid"]],
        "seed": _run_seed(universal),
    }
    if analysis is not None:
        metrics["spectrum"], metrics["theory"] = spectrum, theory
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


def _theory_rows(theory):
    rows = []
    for attack, t in theory.items():
        held_out = t["theorem1_held_out"]["rows"]
        rows.append([display_name(attack), fmt(t["top_eigenvalue"]), fmt(t["eigengap"]),
                     ", ".join(f"{fmt(r[1])} ≥ {fmt(r[2])}" for r in held_out[:2]),
                     t["theorem2_nonvacuous_m"] if t["theorem2_nonvacuous_m"] is not None else "n/a"])
    return rows


def _comparison_lines(comparison):
    """The comparison's L2 table (eps50/eps80, cost) and its L-infinity table."""
    l2_rows = [[display_name(method), m, fmt(c["eps50"]), fmt(c["eps80"]), fmt(c["seconds"], 2),
                c["gradient_evaluations"]]
               for method, by_m in comparison["l2"].items() for m, c in _by_m(by_m)]
    budgets = next(c["budget"] for by_m in comparison["linf"].values() for c in by_m.values())
    linf_rows = [[display_name(method), m] + [fmt(r) for r in c["error_rate"]] + [fmt(c["eps80"])]
                 for method, by_m in comparison["linf"].items() for m, c in _by_m(by_m)]
    return [
        "## Against other universal perturbations",
        "",
        "Every method built from the same sample of m inputs (the iterative UAP at L2 radius "
        f"{fmt(comparison['build_eps'])}, at most {comparison['max_passes']} passes), with its cost, and the "
        "L2 norm at which its error rate reaches 50%/80% (n/a: never on this grid).",
        "",
        markdown_table(["method", "m", "eps50", "eps80", "seconds", "gradient evaluations"], l2_rows),
        "",
        "## Error rate under an L-infinity budget",
        "",
        "Each L2 direction's sign (the L-infinity step that best aligns with it) beside the iterative UAP "
        f"rebuilt in the L-infinity ball of radius {fmt(comparison['linf_build_budget'])}.",
        "",
        markdown_table(["method", "m"] + [f"ε={b:g}" for b in budgets] + ["eps80"], linf_rows),
        "",
    ]


def _sample_spectra(curves):
    """{attack: {m: top singular values}} of the samples whose spectra the
    universal stage recorded (`curves`: attack -> m -> curve, and "random")."""
    found = {a: {m: c["singular_values"] for m, c in by_m.items() if "singular_values" in c}
             for a, by_m in curves.items() if a != "random"}
    return {a: by_m for a, by_m in found.items() if by_m}


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
        markdown_table(["attack", "m", "λ₁", "σ₂/σ₁", "top-5", "top-10"], rows),
        "",
    ]


def _curve_rows(curves, random):
    """Per (attack, m), then the random directions: error rate at every norm,
    eps50, eps80 and eps80 over random's."""
    rows = [[display_name(a), m] + [fmt(r) for r in c["error_rate"]]
            + [fmt(c["eps50"]), fmt(c["eps80"]), fmt(c.get("ratio_eps80_to_random"))]
            for a, by_m in curves.items() if a != "random" for m, c in _by_m(by_m)]
    rows.append(["random", "-"] + [fmt(r) for r in random["error_rate"]]
                + [fmt(random["eps50"]), fmt(random["eps80"]), "-"])
    return rows


def _markdown(metrics):
    model, data = metrics["model"], metrics["data"]
    eps = metrics["eps_grid"]
    lines = [
        "# Universal perturbations of your model",
        "",
        f"Model `{model['path']}` ({'x'.join(map(str, model['input_shape']))} inputs, {model['num_classes']} "
        f"classes, outputs {model['output']}); data `{data['source']}` (split {data['split']}, {data['n']} "
        f"inputs). Clean accuracy {fmt(model['clean_accuracy'], 4)}.",
        "",
    ]
    if "spectrum" in metrics:
        lines += [
            "## Spectrum of the attack directions",
            "",
            "Fraction of the squared singular values of the unit-normalised directions (all n attacked inputs) "
            "held by the top k.",
            "",
            markdown_table(["attack", "n", "top-1", "top-5", "top-10"],
                           [[display_name(a), e["n"], fmt(e["top1_fraction"]), fmt(e["top5_fraction"]),
                             fmt(e["top10_fraction"])] for a, e in metrics["spectrum"].items()]),
            "",
            "## Theory checks",
            "",
            "The top eigenvalue λ of M = E[a aᵀ/|a|²] and its gap to the second; Theorem 1 out of sample "
            "(fraction of held-out directions with |cos| ≥ δ ≥ the bound, for the two smallest δ); the m at "
            "which Theorem 2's bound stops being vacuous.",
            "",
            markdown_table(["attack", "λ", "gap", "Theorem 1 (held out)", "Theorem 2 non-vacuous m"],
                           _theory_rows(metrics["theory"])),
            "",
        ]
    lines += [
        "## Error rate against the L2 norm of the perturbation",
        "",
        "Error rate: perturbed inputs misclassified; eps50/eps80: the norm where it reaches 50%/80% (n/a: "
        "never on this grid); ratio: eps80 over the random directions' eps80 (n/a unless both reach 80%).",
        "",
    ]
    curves = metrics["universal"]
    rows = _curve_rows(curves, curves["random"])
    lines += [markdown_table(["attack", "m"] + [f"ε={e:g}" for e in eps] + ["eps50", "eps80", "ratio"], rows), ""]
    spectra = _sample_spectra(curves)
    if spectra:
        lines += _sample_spectra_lines(spectra)
    if "linf" in metrics:
        rows = _curve_rows(metrics["linf"], metrics["linf"]["random"])
        lines += [
            "## Error rate against the L-infinity norm of the perturbation",
            "",
            "Each perturbation's sign (`sign(v)`, the L-infinity step that best aligns with v) at every "
            "L-infinity budget ε, beside the signs of the random directions; eps50/eps80 are budgets.",
            "",
            markdown_table(["attack", "m"] + [f"ε={e:g}" for e in metrics["linf_grid"]]
                           + ["eps50", "eps80", "ratio"], rows),
            "",
        ]
    if "comparison" in metrics:
        lines += _comparison_lines(metrics["comparison"])
    lines += ["## Figures", ""] + [f"![{os.path.splitext(os.path.basename(p))[0]}]({p})" for p in metrics["figures"]]
    lines += ["", "## Using a perturbation", "",
              "`<run-dir>/perturbations/<model>-<attack>-m<m>.npy` (`metrics.json`'s `perturbations`) has the shape of one input and unit L2 "
              "norm. At L2 norm eps: `np.clip(x + eps * v, clip_min, clip_max)`; at L-infinity norm eps: "
              "`np.clip(x + eps * np.sign(v), clip_min, clip_max)`.", ""]
    if metrics["timings"]["stages"]:
        lines += ["## Stage times", "", markdown_table(["stage", "seconds"],
                                                        [[k, fmt(v, 1)] for k, v in metrics["timings"]["stages"].items()]),
                  ""]
    return "\n".join(lines)


def _load_json(path):
    if path is None:
        return None
    with open(path) as f:
        return json.load(f)


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
    universal = _load_json(os.path.join(universal_dir, "universal.json"))
    analysis, comparison = _load_json(analysis_file), _load_json(comparison_file)
    perturbations = {a: {m: np.load(os.path.join(universal_dir, "perturbations", _file_name(universal, a, m)))
                         for m in by_m} for a, by_m in universal["curves"].items()}
    figures_dir = os.path.join(output_dir, "figures")
    figures = []
    if analysis is not None:
        figures.append(singular_values_figure(os.path.join(figures_dir, "singular_values.png"),
                                              _spectrum_and_theory(analysis)[0]))
    figures.append(perturbations_figure(os.path.join(figures_dir, "perturbations.png"), perturbations))
    figures.append(curves_figure(os.path.join(figures_dir, "curves.png"), universal["curves"], universal["random"],
                                 universal["clean_error_rate"]))
    spectra = _sample_spectra(universal["curves"])
    if spectra:
        figures.append(sample_spectra(os.path.join(figures_dir, "sample_spectra.png"),
                                      "Top singular values of each sample", spectra))
    if "linf" in universal:
        figures.append(universal_curves(os.path.join(figures_dir, "linf_curves.png"),
                                        "The perturbations' signs against the L-infinity budget",
                                        universal["linf"]["curves"], universal["linf"]["random"],
                                        universal["clean_error_rate"], norm_label="‖δ‖∞"))
    figures = [f"figures/{os.path.basename(path)}" for path in figures]
    metrics = _metrics(data_summary, universal, analysis, comparison, timings, sources, figures)
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    with open(os.path.join(output_dir, "report.md"), "w") as f:
        f.write(_markdown(metrics))
    return metrics
