"""Figures of the report, one function per kind of figure in the paper.

Each function draws one figure, writes it as a PNG and returns the path. They
use `matplotlib.figure.Figure` directly rather than pyplot: no global backend
switch and no figure registry, so they are safe to call from a library (the
Agg canvas is used implicitly by `savefig`). Undefined values (None) are drawn
as gaps, never as zeros.
"""

import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from keras_uap.report.claims import AVG_DOT_MAX, ERROR_RATE_TARGET, TOP5_FRACTION_MIN
from keras_uap.report.tables import ATTACK_ORDER, display_name

__all__ = ["spectrum_fraction_bars", "singular_value_spectra", "sample_spectra", "invariant_dot_bars",
           "universal_curves", "display_image", "perturbation_images", "singular_vector_grid", "theory_panels",
           "training_curves", "fgsm_clipping_curves", "draw_all"]

DPI = 110
_M_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")


def _floats(values):
    """A float array with None as NaN (matplotlib leaves NaN points out)."""
    return np.array([np.nan if v is None else v for v in (values or [])], dtype=float)


def _save(fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _panels(n, width=4.0, height=3.2, rows=1, **kwargs):
    fig = Figure(figsize=(width * max(n, 1), height * rows))
    axes = fig.subplots(rows, max(n, 1), squeeze=False, **kwargs)
    return fig, axes


def spectrum_fraction_bars(path, fractions, k=5, threshold=TOP5_FRACTION_MIN, attack="gradient"):
    """Figure 1: fraction of the total squared spectrum in the top-k singular values, per model.

    Args:
        path: PNG to write.
        fractions: model -> fraction (None if not measured).
        k: how many top singular values the fractions cover (for the labels).
        threshold: the paper's claimed lower bound, drawn as a dashed line.
        attack: which directions the fractions come from (for the title).
    """
    fig, axes = _panels(1, width=1.2 * len(fractions) + 2.5)
    ax = axes[0, 0]
    values = _floats(list(fractions.values()))
    bars = ax.bar([display_name(m) for m in fractions], np.nan_to_num(values), color="tab:blue")
    ax.bar_label(bars, labels=["n/a" if np.isnan(v) else f"{v:.3f}" for v in values])
    ax.axhline(threshold, ls="--", color="k", lw=1, label=f"paper: > {threshold:.2f}")
    ax.set_ylim(0, 1.2 * max(np.nanmax(values, initial=0.0), threshold))  # room for the labels and legend
    ax.set_ylabel(f"top-{k} fraction of Σσ²")
    ax.set_title(f"Top-{k} spectrum fraction, {display_name(attack)} directions")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def singular_value_spectra(path, title, spectra, sample_label="sample", all_label="all"):
    """Figures 2a/3a: singular values of the attack directions, all inputs vs a sample.

    Each spectrum is divided by its root total squared value (so squares sum to
    1, the eigenvalues of Theorem 1's matrix M): a 500-row and a 10,000-row
    matrix of unit rows are otherwise offset by sqrt(20) and could not be compared.

    Args:
        path: PNG to write.
        title: figure title.
        spectra: attack -> (singular values of all inputs, singular values of the sample).
        sample_label, all_label: legend wording for the two matrices.
    """
    fig, axes = _panels(1, width=6.0, height=4.0)
    ax = axes[0, 0]
    for i, (attack, (full, sample)) in enumerate(spectra.items()):
        colour = f"C{i}"
        for values, style, label in ((full, "-", all_label), (sample, "--", sample_label)):
            s = _floats(values)
            total = np.sqrt(np.nansum(s ** 2))
            if s.size and total > 0:
                s = s / total
                s[s <= 0] = np.nan  # zeros (rank deficiency) cannot sit on a log axis
                ax.plot(np.arange(1, s.size + 1), s, style, color=colour, lw=1.2,
                        label=f"{display_name(attack)} ({label})")
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel("index of singular value")
    ax.set_ylabel("σᵢ / sqrt(Σσ²)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def sample_spectra(path, title, spectra):
    """The top singular values of each SVD sample, one panel per attack and
    one line per sample size m: σᵢ²/m, the top eigenvalues of the sample's
    M = (1/m) Σ a aᵀ/‖a‖² (Theorem 1's λ at i = 1), on one scale for every m.

    Args:
        path: PNG to write.
        title: figure title.
        spectra: attack -> m (string) -> the sample's top singular values, descending.
    """
    fig, axes = _panels(len(spectra), sharey=True)
    for ax, (attack, by_m) in zip(axes[0], spectra.items()):
        for i, (m, values) in enumerate(sorted(by_m.items(), key=lambda kv: int(kv[0]))):
            eigenvalues = _floats(values) ** 2 / int(m)
            eigenvalues[eigenvalues <= 0] = np.nan  # rank deficiency (m below the values kept) off the log axis
            ax.plot(np.arange(1, eigenvalues.size + 1), eigenvalues, ".-", ms=3,
                    color=_M_COLOURS[i % len(_M_COLOURS)], label=f"m={m}")
        ax.set_yscale("log")
        ax.set_title(display_name(attack))
        ax.set_xlabel("index i")
    axes[0, 0].set_ylabel("σᵢ² / m")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, y=1.04)
    return _save(fig, path)


def invariant_dot_bars(path, title, comparison, threshold=AVG_DOT_MAX):
    """Figures 2b/3b: average |dot product| of top-5/top-10 adversarial vs invariant
    singular vectors, for the sample and for all inputs, grouped per attack."""
    series = (("avg_abs_dot_top5_sample", "top 5, sample"), ("avg_abs_dot_top5", "top 5, all"),
              ("avg_abs_dot_top10_sample", "top 10, sample"), ("avg_abs_dot_top10", "top 10, all"))
    attacks = list(comparison)
    fig, axes = _panels(1, width=1.6 * len(attacks) + 2.5, height=3.6)
    ax = axes[0, 0]
    x = np.arange(len(attacks))
    width = 0.8 / len(series)
    for j, (key, label) in enumerate(series):
        values = _floats([comparison[a].get(key) for a in attacks])
        ax.bar(x + (j - 1.5) * width, np.nan_to_num(values), width, label=label, color=f"C{j}")
    ax.axhline(threshold, ls="--", color="k", lw=1, label=f"paper: < {threshold}")
    ax.set_xticks(x, [display_name(a) for a in attacks])
    ax.set_ylabel("average |⟨u_adv, u_inv⟩|")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def universal_curves(path, title, curves, random=None, clean_error_rate=None, target=ERROR_RATE_TARGET,
                     norm_label="‖δ‖₂"):
    """Figures 5/6: error rate vs L2 norm of the universal perturbation, one panel per attack.

    Args:
        path: PNG to write.
        title: figure title.
        curves: attack -> m (string) -> {"eps", "error_rate", "fooling_rate"}.
        random: the random-direction baseline curve, or None.
        clean_error_rate: error rate without perturbation (dotted line), or None.
        target: the paper's 80% level (dotted line).
        norm_label: the x axis (the norm `eps` is in).
    """
    fig, axes = _panels(len(curves), sharey=True)
    first_ms = None
    for ax, (attack, by_m) in zip(axes[0], curves.items()):
        first_ms = set(by_m) if first_ms is None else first_ms
        for i, (m, c) in enumerate(sorted(by_m.items(), key=lambda kv: int(kv[0]))):
            colour = _M_COLOURS[i % len(_M_COLOURS)]
            ax.plot(_floats(c["eps"]), _floats(c["error_rate"]), "-", color=colour, label=f"m={m}")
            ax.plot(_floats(c["eps"]), _floats(c["fooling_rate"]), ":", color=colour, lw=1)
            if c.get("other_sign"):
                other = c["other_sign"]
                ax.plot(_floats(other["eps"]), _floats(other["error_rate"]), "--", color=colour, lw=1,
                        label=f"m={m}, other sign")
        if random:
            ax.plot(_floats(random["eps"]), _floats(random["error_rate"]), "-", color="0.4", label="random")
        if clean_error_rate is not None:
            ax.axhline(clean_error_rate, color="0.6", ls="-.", lw=0.8, label="clean")
        ax.axhline(target, color="k", ls="--", lw=0.8)
        ax.set_title(display_name(attack))
        ax.set_xlabel(norm_label)
        ax.set_ylim(0, 1.02)
        if set(by_m) != first_ms:  # e.g. an attack run on a subset: its own sample sizes
            ax.legend(fontsize=7, loc="lower right")
    axes[0, 0].set_ylabel("error rate (solid), prediction changed (dotted)")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, y=1.04)  # above the panel titles (bbox_inches="tight" keeps it in the PNG)
    return _save(fig, path)


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


def perturbation_images(path, title, perturbations):
    """Universal perturbations as images (`display_image`), one row per
    attack and one column per sample size.

    Args:
        path: PNG to write.
        title: figure title.
        perturbations: attack -> m (string) -> a perturbation of one input's shape.
    """
    columns = max(len(by_m) for by_m in perturbations.values())
    fig, axes = _panels(columns, width=2.2, height=2.4, rows=len(perturbations))
    for row, (attack, by_m) in zip(axes, perturbations.items()):
        for ax in row:
            ax.set_axis_off()
        for ax, (m, v) in zip(row, sorted(by_m.items(), key=lambda kv: int(kv[0]))):
            image = display_image(v)
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(f"{display_name(attack)}, m={m}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _as_image(vector):
    """One singular vector (H, W) or (H, W, C) as an (H, W) image: its
    channel mean, so a signed colour scale still applies."""
    return vector.mean(axis=-1) if vector.ndim == 3 else vector


def singular_vector_grid(path, title, vectors, k=5):
    """Figures 7-13: the top-k singular vectors as images, on a diverging colormap centred at 0.

    One shared symmetric colour scale (every vector has unit norm, so the
    scales are comparable); the sign of a singular vector is arbitrary.
    """
    images = np.asarray(vectors, dtype=float)[:k]
    limit = float(np.max(np.abs(images))) or 1.0
    fig, axes = _panels(len(images), width=1.9, height=2.2)
    for i, (ax, image) in enumerate(zip(axes[0], images)):
        shown = ax.imshow(_as_image(image), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"v{i + 1}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=list(axes[0]), shrink=0.8)
    fig.suptitle(title, fontsize=10, y=1.0)
    return _save(fig, path)


def theory_panels(path, title, theory):
    """Theorems 1 and 2 per attack: top row, measured Pr(|⟨a,v⟩| ≥ δ) in sample and on a held-out half
    beside the bound vs δ; bottom row, ‖v − ṽ‖ (mean ± std over seeds, and the one sample of Theorem 2's
    rows) and Theorem 2's bound where it is not vacuous, vs the sample size m."""
    fig, axes = _panels(len(theory), rows=2)
    for col, (attack, t) in enumerate(theory.items()):
        top, bottom = axes[0, col], axes[1, col]
        rows1 = np.array([[np.nan if v is None else v for v in r] for r in t["theorem1"]], float).reshape(-1, 3)
        top.plot(rows1[:, 0], rows1[:, 1], "o-", ms=3, label="measured (in sample)")
        top.plot(rows1[:, 0], rows1[:, 2], "s--", ms=3, label="Theorem 1 bound")
        held = np.array((t.get("theorem1_held_out") or {}).get("rows") or [], float).reshape(-1, 3)
        top.plot(held[:, 0], held[:, 1], "^:", ms=3, label="measured (held-out half)")
        top.set_title(f"{display_name(attack)} (λ₁={t['top_eigenvalue'] or float('nan'):.3f})")
        top.set_xlabel("δ")
        top.set_ylim(-0.02, 1.02)
        rows2 = np.array([[np.nan if v is None else v for v in r] for r in t.get("sample_distances") or []],
                         float).reshape(-1, 3)
        bottom.errorbar(rows2[:, 0], rows2[:, 1], yerr=rows2[:, 2], fmt="o-", ms=3, capsize=2,
                        label="‖v − ṽ‖, mean over seeds")
        t2 = t.get("theorem2") or []
        m2 = np.array([r["m"] for r in t2], float)
        bottom.plot(m2, [r["distance"] for r in t2], "^", ms=4, label="‖v − ṽ‖ (Theorem 2 sample)")
        bottom.plot(m2, [np.nan if r["bound"] is None else r["bound"] for r in t2], "s--", ms=3,
                    label="ε/(γ − ε) (vacuous: not drawn)")
        if len(rows2):
            bottom.set_xscale("log")
            # Label the measured sizes only: log-axis minor labels (3x10^2, ...) overlap.
            bottom.set_xticks(rows2[:, 0], [f"{m:g}" for m in rows2[:, 0]])
            bottom.xaxis.set_minor_formatter(NullFormatter())
        bottom.set_xlabel("sample size m")
        bottom.set_ylim(0, 2.05)  # ‖v − ṽ‖ ≤ 2 for unit vectors; a larger bound says nothing
    axes[0, 0].set_ylabel("Pr(|⟨a/‖a‖, v⟩| ≥ δ)")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].set_ylabel("‖v − ṽ‖₂")
    axes[1, 0].legend(fontsize=7)
    fig.suptitle(title, y=1.0)
    return _save(fig, path)


def training_curves(path, histories):
    """Training loss and accuracy per epoch, train (solid) and validation (dashed), per model."""
    fig, axes = _panels(2)
    for i, (model, history) in enumerate(histories.items()):
        for ax, key in zip(axes[0], ("loss", "accuracy")):
            for prefix, style in (("", "-"), ("val_", "--")):
                values = _floats(history.get(prefix + key))
                if values.size:
                    ax.plot(np.arange(1, values.size + 1), values, style, color=f"C{i}",
                            label=f"{display_name(model)} {'validation' if prefix else 'train'}")
    for ax, key in zip(axes[0], ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 1].legend(fontsize=7)
    return _save(fig, path)


def fgsm_clipping_curves(path, curves, reference_eps):
    """Error rate vs ‖δ‖₂ of the FGSM and clipped-FGSM universal directions, one panel per model.

    Args:
        path: PNG to write.
        curves: model -> attack -> (m, curve dict with "eps" and "error_rate").
        reference_eps: the norm at which the report compares them (vertical line).
    """
    fig, axes = _panels(len(curves), sharey=True)
    for ax, (model, by_attack) in zip(axes[0], curves.items()):
        for attack, (m, c) in by_attack.items():
            ax.plot(_floats(c["eps"]), _floats(c["error_rate"]), label=f"{display_name(attack)}, m={m}")
        ax.axvline(reference_eps, color="k", ls="--", lw=0.8, label=f"‖δ‖₂ = {reference_eps:g}")
        ax.set_title(display_name(model))
        ax.set_xlabel("‖δ‖₂")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("error rate")
    return _save(fig, path)


def draw_all(figures_dir, metrics, top_vectors, models_info):
    """Draws every figure the metrics allow and returns {figure key: PNG path}.

    Keys: "fig1", "spectrum/<model>", "invariant_dot/<model>", "universal/<model>",
    "theory/<model>", "vectors/<model>/<attack or invariant>", "fgsm_clipping", "training".
    A figure whose inputs are absent (e.g. no universal curves for a model) is left out.
    """
    def out(name):
        return os.path.join(figures_dir, name + ".png")

    paths = {}
    gradient = {m: s["gradient"]["top5_fraction"] for m, s in metrics["spectrum"].items() if "gradient" in s}
    if gradient:
        paths["fig1"] = spectrum_fraction_bars(out("fig1_top5_fraction_gradient"), gradient)
    for model, attacks in metrics["spectrum"].items():
        spectra = {a: (s["singular_values"], s["singular_values_sample"]) for a, s in attacks.items()}
        paths[f"spectrum/{model}"] = singular_value_spectra(
            out(f"{model}_singular_values"), f"{display_name(model)}: singular values of attack directions", spectra)
    for model, comparison in metrics["invariant"].items():
        paths[f"invariant_dot/{model}"] = invariant_dot_bars(
            out(f"{model}_invariant_dot"), f"{display_name(model)}: adversarial vs invariant singular vectors",
            comparison)
    for model, entries in metrics["universal"].items():
        curves = {a: by_m for a, by_m in entries.items() if a != "random"}
        if curves:
            title = f"{display_name(model)}: universal perturbation along the top singular vector"
            paths[f"universal/{model}"] = universal_curves(out(f"{model}_universal"), title, curves,
                                                           entries.get("random"),
                                                           metrics["models"][model].get("clean_error_rate"))
    for model, theory in metrics["theory"].items():
        paths[f"theory/{model}"] = theory_panels(out(f"{model}_theory"), f"{display_name(model)}: Theorems 1 and 2",
                                                 theory)
    for model, arrays in top_vectors.items():
        # `top_vectors.npz` also holds `<name>_sample` arrays (from the sample); the paper shows all inputs'.
        names = [k for k in arrays if k == "invariant" or k in metrics["spectrum"].get(model, {})]
        names.sort(key=lambda k: (k != "invariant", ATTACK_ORDER.index(k) if k in ATTACK_ORDER else 9, k))
        for name in names:
            label = "invariant (small-rotation difference)" if name == "invariant" else display_name(name)
            title = f"{display_name(model)}: top 5 singular vectors, {label} directions"
            paths[f"vectors/{model}/{name}"] = singular_vector_grid(out(f"{model}_top_vectors_{name}"), title,
                                                                    arrays[name])
    clipping = metrics["fgsm_clipping"]["models"]
    if clipping:
        curves = {model: {a: (e["m"], metrics["universal"][model][a][e["m"]]) for a, e in entry.items()}
                  for model, entry in clipping.items()}
        paths["fgsm_clipping"] = fgsm_clipping_curves(out("fgsm_vs_fgsm_clipped"), curves,
                                                      metrics["fgsm_clipping"]["reference_eps"])
    histories = {m: i["history"] for m, i in models_info.items() if i.get("history")}
    if histories:
        paths["training"] = training_curves(out("training_curves"), histories)
    return paths
