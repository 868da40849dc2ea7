"""The study on the user's own model and data, as a chain of cached stages.

`run_user_study(UserStudyConfig(model_path=..., data=...))` runs, for any
image classifier (a `.keras` file or a TF SavedModel directory) on any
labelled image set (an `.npz` with `x` and `y`, an IDX directory or a
TensorFlow Datasets name):

| stage | output (under the run directory) |
|---|---|
| `user_data` | `user_data/{data.npz,summary.json}`: the images (after `limit`), checked against the model |
| `user_directions` | `user_directions/<attack>/directions.npz`: per-input attack directions of the sampled inputs |
| `user_universal` | `user_universal/{universal.json,perturbations/<attack>-m<m>.npy}`: spectra, curves |
| `user_report` | `user_report/{report.md,metrics.json,figures/}` |

and then publishes `<run-dir>/metrics.json` and `<run-dir>/perturbations/`.

For each sample size m the inputs attacked are the ones
`keras_uap.api.svd_universal_perturbation(model, x, y, attack, sample_size=m,
seed=seed)` attacks, so each perturbation is the one that call returns;
the directions stage attacks the union of those samples once. Error and
fooling rates are measured on every loaded input, over the norm grid
(starting at 0), beside random unit directions.

Caching and lineage are those of `keras_uap.pipelines.runner`: the inputs
are the model and data files by content, the parameters everything that
changes the numbers; the strategy, batch sizes and progress display are
settings outside the cache key.
"""

import dataclasses
import json
import math
import os

import numpy as np

from keras_uap.api import ATTACKS, NORMS, STRATEGIES
from keras_uap.method import PAPER_ATTACKS
from keras_uap.api._checks import range_if_outside
from keras_uap.errors import UserError
from keras_uap.pipelines.paths import check_output_dir
from keras_uap.pipelines.code_versions import code_version
from keras_uap.pipelines.runner import Stage, publish_run_outputs, recorded_timings, run_stage

__all__ = ["UserStudyConfig", "run_user_study", "DEFAULT_EPS", "USER_DATA_STAGE", "USER_DIRECTIONS_STAGE",
           "USER_UNIVERSAL_STAGE", "USER_REPORT_STAGE"]

# Default norm grids per unit of the input range (clip_max - clip_min):
# `UserStudyConfig.eps_grid` scales them to the data's own units.
DEFAULT_EPS = {"l2": (1.0, 2.0, 4.0, 8.0), "linf": (0.01, 0.02, 0.04, 0.08)}
RANDOM_SEEDS = (0, 1, 2)


@dataclasses.dataclass
class UserStudyConfig:
    """Everything a user study depends on.

    Attributes:
        model_path: a `.keras` (or `.h5`) file or a TF SavedModel directory.
        data: an `.npz` file (arrays `x`, `y`), an IDX directory, or a
            TensorFlow Datasets name.
        split: which split to load ("test", "train", or a TFDS split).
        clip_min, clip_max: the valid input range; the data must lie in it.
        attacks: attack names among `keras_uap.api.ATTACKS` (default: the paper's).
        sample_sizes: how many directions each SVD uses (at most the inputs).
        limit: use only the first `limit` inputs (None: all).
        eps: the norm grid, data units (None: `DEFAULT_EPS[norm]` times
            `clip_max - clip_min`).
        norm: "l2" or "linf" for the curves.
        strategy: "none" or "mirrored" (`keras_uap.api.make_strategy`).
        seed: seeds the samples.
        run_dir: where the stage outputs go.
        force: redo stages even when cached.
        attack_batch_size, eval_batch_size: inputs per batch (not results).
        progress: `progress(done, total)` for long loops, or None.
    """

    model_path: str
    data: str
    split: str = "test"
    clip_min: float = 0.0
    clip_max: float = 1.0
    attacks: tuple = PAPER_ATTACKS
    sample_sizes: tuple = (100, 500)
    limit: int | None = None
    eps: tuple | None = None
    norm: str = "l2"
    strategy: str = "none"
    seed: int = 0
    run_dir: str = "runs/study"
    force: bool = False
    attack_batch_size: int = 128
    eval_batch_size: int = 1000
    progress: object = None

    @property
    def eps_grid(self):
        """The norms of the curves, 0 first."""
        scale = self.clip_max - self.clip_min
        grid = [scale * e for e in DEFAULT_EPS[self.norm]] if self.eps is None else self.eps
        return [0.0] + sorted({float(e) for e in grid if float(e) > 0})

    def validate(self):
        """This configuration, or a UserError naming the first bad value."""
        if not os.path.exists(self.model_path):
            raise UserError(f"{self.model_path}: model not found")
        if not os.path.exists(self.data) and _looks_like_path(self.data):
            raise UserError(f"{self.data}: data not found")
        if not self.attacks:
            raise UserError(f"no attack chosen; choose from: {', '.join(ATTACKS)}")
        for attack in self.attacks:
            if attack not in ATTACKS:
                raise UserError(f"unknown attack {attack!r}; choose from: {', '.join(ATTACKS)}")
        if not self.sample_sizes or any(not isinstance(m, int) or m < 1 for m in self.sample_sizes):
            raise UserError(f"--sample-sizes must be integers >= 1, got {list(self.sample_sizes)}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be at least 1, got {self.limit}")
        if self.norm not in NORMS:
            raise UserError(f"unknown norm {self.norm!r}; choose from: {', '.join(NORMS)}")
        if self.strategy not in STRATEGIES:
            raise UserError(f"unknown strategy {self.strategy!r}; choose from: {', '.join(STRATEGIES)}")
        if self.eps is not None and (not self.eps or any(not math.isfinite(e) or e < 0 for e in self.eps)
                                     or not any(e > 0 for e in self.eps)):
            raise UserError(f"--eps must be finite norms >= 0, at least one positive, got {list(self.eps)}")
        if not (math.isfinite(self.clip_min) and math.isfinite(self.clip_max) and self.clip_min < self.clip_max):
            raise UserError(f"--clip-min must be below --clip-max, got {self.clip_min} and {self.clip_max}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"--seed must be an integer >= 0, got {self.seed!r}")
        check_output_dir(self.run_dir, "--run-dir")
        return self


def _looks_like_path(text):
    """Whether `text` names a file rather than a TFDS data set (as `load_images` decides)."""
    return os.sep in text or text.startswith(".") or text.endswith(".npz")


# --- Stage bodies ----------------------------------------------------------------


def _write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=1)


def _user_data_stage(output_dir, model, tfds_name, split, limit, clip_min, clip_max, data=None):
    """Loads and checks the images against the model; writes `data.npz` (x, y) and `summary.json`."""
    from keras_uap.api import check_compatible, load_classifier, load_images

    classifier = load_classifier(model)
    x, y = load_images(data if data is not None else tfds_name, split=split, limit=limit)
    check_compatible(classifier, x, y)
    outside = range_if_outside(x, clip_min, clip_max)
    if outside:
        raise UserError(f"the images lie in [{outside[0]:g}, {outside[1]:g}], outside --clip-min {clip_min:g} / "
                        f"--clip-max {clip_max:g}; set those to the data's range")
    low, high = float(x.min()), float(x.max())
    np.savez(os.path.join(output_dir, "data.npz"), x=x, y=y)
    summary = {"n": int(len(x)), "input_shape": list(x.shape[1:]), "num_classes": classifier.num_classes,
               "output": classifier.output, "pixel_range": [low, high],
               "label_counts": np.bincount(y, minlength=classifier.num_classes).tolist()}
    _write_json(os.path.join(output_dir, "summary.json"), summary)
    return {"n": summary["n"], "input_shape": summary["input_shape"], "num_classes": summary["num_classes"]}


def _load_data(path):
    with np.load(path, allow_pickle=False) as f:
        return f["x"], f["y"]


def _sample_union(n, sample_sizes, seed):
    """{m: indices} as `svd_universal_perturbation` draws them, and their sorted union."""
    from keras_uap.method import draw_sample

    samples = {min(m, n): draw_sample(n, m, seed) for m in sample_sizes}
    return samples, np.unique(np.concatenate(list(samples.values())))


def _user_directions_stage(output_dir, model, data, attack, sample_sizes, seed, clip_min, clip_max,
                           batch_size=128, strategy=None, progress=None):
    """Attack directions of every input any sample needs: `directions.npz` (index, y, directions)."""
    from keras_uap.api import attack_directions, load_classifier

    classifier = load_classifier(model)
    x, y = _load_data(data)
    _, index = _sample_union(len(x), sample_sizes, seed)
    parts = []
    for start in range(0, len(index), batch_size):
        chunk = index[start:start + batch_size]
        parts.append(attack_directions(classifier, x[chunk], y[chunk], attack, clip_min, clip_max,
                                       batch_size=batch_size, strategy=strategy))
        if progress:
            progress(min(start + batch_size, len(index)), len(index))
    directions = np.concatenate(parts)
    np.savez(os.path.join(output_dir, "directions.npz"), index=index, y=y[index], directions=directions)
    norms = np.linalg.norm(directions.reshape(len(directions), -1), axis=1)
    return {"attack": attack, "n": int(len(index)), "median_l2": float(np.median(norms)),
            "zero_directions": int(np.sum(norms == 0))}


def _curve_summary(curve, random=None):
    from keras_uap.method import interpolate_crossing

    summary = {"eps": curve.eps.tolist(), "error_rate": curve.error_rate.tolist(),
               "fooling_rate": curve.fooling_rate.tolist()}
    for level in (50, 80):
        summary[f"eps{level}"] = interpolate_crossing(curve.eps, curve.error_rate, level / 100)
        summary[f"fooling_eps{level}"] = interpolate_crossing(curve.eps, curve.fooling_rate, level / 100)
    if random is not None:
        for key in ("eps50", "eps80"):
            ours, base = summary[key], random[key]
            summary[f"ratio_{key}_to_random"] = None if ours is None or not base else ours / base
    return summary


def _random_baseline(classifier, x, y, eps, norm, seeds, batch_size, strategy, clip_min, clip_max):
    """Mean curves of random Gaussian unit directions (one per seed)."""
    from keras_uap.api import fooling_curve
    from keras_uap.method import interpolate_crossing, random_unit_vectors

    curves = [fooling_curve(classifier, x, y, v.reshape(x.shape[1:]), eps, norm, batch_size, strategy, clip_min,
                            clip_max) for v in random_unit_vectors(int(np.prod(x.shape[1:])), seeds)]
    error = np.mean([c.error_rate for c in curves], axis=0)
    fooling = np.mean([c.fooling_rate for c in curves], axis=0)
    return {"eps": list(map(float, eps)), "error_rate": error.tolist(), "fooling_rate": fooling.tolist(),
            "eps50": interpolate_crossing(eps, error, 0.5), "eps80": interpolate_crossing(eps, error, 0.8),
            "seeds": list(seeds), "per_seed_error_rate": [c.error_rate.tolist() for c in curves]}


def _user_universal_stage(output_dir, model, data, sample_sizes, seed, eps, norm, clip_min, clip_max, random_seeds,
                          batch_size=1000, strategy=None, progress=None, **directions_files):
    """Per attack and m: spectrum, SVD perturbation (saved), and its curves; plus the random baseline."""
    from keras_uap.analysis import spectrum_fractions
    from keras_uap.api import default_sign_norms, fooling_curve, load_classifier, universal_from_directions

    classifier = load_classifier(model)
    x, y = _load_data(data)
    samples, _ = _sample_union(len(x), sample_sizes, seed)
    # The API's default: the study's L2 grid scaled to the data, whatever norm the curves use.
    sign_norms = default_sign_norms(x.shape[1:], clip_min, clip_max)
    attacks = [a for a in ATTACKS if f"directions_{a}" in directions_files]
    total, done = len(attacks) * len(samples) + 1, 0
    random = _random_baseline(classifier, x, y, eps, norm, random_seeds, batch_size, strategy, clip_min, clip_max)
    if progress:
        progress(done := done + 1, total)
    os.makedirs(os.path.join(output_dir, "perturbations"))
    spectrum, curves = {}, {}
    clean_error_rate = None
    for attack in attacks:
        with np.load(directions_files[f"directions_{attack}"], allow_pickle=False) as f:
            index, directions = f["index"], f["directions"]
        spectrum[attack], curves[attack] = {}, {}
        for m, pick in sorted(samples.items()):
            rows = np.searchsorted(index, pick)
            v, singular_values = universal_from_directions(classifier, directions[rows], x[pick], y[pick],
                                                           clip_min, clip_max, sign_norms=sign_norms)
            fractions = spectrum_fractions(singular_values, ks=(1, 5, 10))
            spectrum[attack][str(m)] = {"singular_values": singular_values.tolist(),
                                        **{f"top{k}_fraction": f for k, f in fractions.items()}}
            curve = fooling_curve(classifier, x, y, v, eps, norm, batch_size, strategy, clip_min, clip_max)
            clean_error_rate = curve.clean_error_rate
            name = f"{attack}-m{m}.npy"
            np.save(os.path.join(output_dir, "perturbations", name), v)
            curves[attack][str(m)] = {**_curve_summary(curve, random), "sample_size": int(m),
                                      "perturbation": f"perturbations/{name}"}
            if progress:
                progress(done := done + 1, total)
    result = {"n_eval": int(len(x)), "norm": norm, "eps_grid": list(map(float, eps)), "seed": seed,
              "sign_norms": [float(e) for e in sign_norms],
              "clean_error_rate": clean_error_rate, "spectrum": spectrum, "curves": curves, "random": random}
    _write_json(os.path.join(output_dir, "universal.json"), result)
    return {a: {m: c["eps80"] for m, c in by_m.items()} for a, by_m in curves.items()}


def _user_report_stage(output_dir, summary, universal, timings=None, sources=None):
    """`report.md`, `metrics.json` and `figures/` from the universal stage's artifacts."""
    from keras_uap.pipelines.user_report import build_user_report

    with open(summary) as f:
        data_summary = json.load(f)
    metrics = build_user_report(output_dir, data_summary, universal, timings or {}, sources or {})
    return {"figures": len(metrics["figures"])}


# --- Stages ------------------------------------------------------------------------

USER_DATA_STAGE = Stage(
    name="user_data",
    fn=_user_data_stage,
    version=code_version("1", __name__),
    inputs=("model", "data"),
    params=("tfds_name", "split", "limit", "clip_min", "clip_max"),
)
USER_DIRECTIONS_STAGE = Stage(
    name="user_directions",
    fn=_user_directions_stage,
    version=code_version("1", __name__),
    inputs=("model", "data"),
    params=("attack", "sample_sizes", "seed", "clip_min", "clip_max"),
    settings=("batch_size", "strategy", "progress"),
)
USER_UNIVERSAL_STAGE = Stage(
    name="user_universal",
    fn=_user_universal_stage,
    version=code_version("1", __name__),
    inputs=("model", "data", "directions_*"),
    params=("sample_sizes", "seed", "eps", "norm", "clip_min", "clip_max", "random_seeds"),
    settings=("batch_size", "strategy", "progress"),
)
USER_REPORT_STAGE = Stage(
    name="user_report",
    fn=_user_report_stage,
    version=code_version("1", __name__),
    inputs=("summary", "universal"),
    settings=("timings", "sources"),
)


# --- The chain -----------------------------------------------------------------------


def run_user_study(cfg, log=None):
    """Runs (or reuses) every stage of the study on the user's model and data.

    Args:
        cfg: a `UserStudyConfig`.
        log: optional callable taking one line of progress text.

    Returns:
        {stage label: `StageResult`}, in the order the stages ran:
        "user_data", "user_directions-<attack>" per attack, "user_universal",
        "user_report".

    Raises:
        UserError: a bad setting, a missing or unreadable model or data set,
            or data that does not fit the model (shape, labels, range).
    """
    from keras_uap.api import make_strategy

    cfg.validate()
    strategy = make_strategy(cfg.strategy)
    run_dir = cfg.run_dir
    model = {"model": cfg.model_path}
    is_path = os.path.exists(cfg.data)
    clip = {"clip_min": float(cfg.clip_min), "clip_max": float(cfg.clip_max)}
    results = {"user_data": run_stage(
        USER_DATA_STAGE, os.path.join(run_dir, "user_data"),
        inputs={**model, **({"data": cfg.data} if is_path else {})},
        params={"tfds_name": None if is_path else cfg.data, "split": cfg.split, "limit": cfg.limit, **clip},
        force=cfg.force, log=log)}
    data = {"data": os.path.join(results["user_data"].output_dir, "data.npz")}
    sample_sizes = sorted(set(int(m) for m in cfg.sample_sizes))
    n = results["user_data"].summary["n"]
    if log and sample_sizes[-1] > n:
        log(f"--sample-sizes {', '.join(str(m) for m in sample_sizes if m > n)}: only {n} inputs, "
            f"so the SVD uses all {n}")
    directions = {}
    for attack in (a for a in ATTACKS if a in cfg.attacks):
        result = run_stage(
            USER_DIRECTIONS_STAGE, os.path.join(run_dir, "user_directions", attack),
            inputs={**model, **data},
            params={"attack": attack, "sample_sizes": sample_sizes, "seed": cfg.seed, **clip},
            settings={"batch_size": cfg.attack_batch_size, "strategy": strategy, "progress": cfg.progress},
            force=cfg.force, log=log)
        results[f"user_directions-{attack}"] = result
        directions[f"directions_{attack}"] = os.path.join(result.output_dir, "directions.npz")
    results["user_universal"] = run_stage(
        USER_UNIVERSAL_STAGE, os.path.join(run_dir, "user_universal"),
        inputs={**model, **data, **directions},
        params={"sample_sizes": sample_sizes, "seed": cfg.seed, "eps": cfg.eps_grid, "norm": cfg.norm, **clip,
                "random_seeds": list(RANDOM_SEEDS)},
        settings={"batch_size": cfg.eval_batch_size, "strategy": strategy, "progress": cfg.progress},
        force=cfg.force, log=log)
    results["user_report"] = run_stage(
        USER_REPORT_STAGE, os.path.join(run_dir, "user_report"),
        inputs={"summary": os.path.join(results["user_data"].output_dir, "summary.json"),
                "universal": results["user_universal"].output_dir},
        settings={"timings": recorded_timings(results),
                  "sources": {"model": os.path.abspath(cfg.model_path),
                              "data": os.path.abspath(cfg.data) if is_path else cfg.data, "split": cfg.split}},
        force=cfg.force, log=log)
    publish_run_outputs(run_dir, os.path.join(results["user_report"].output_dir, "metrics.json"),
                        [os.path.join(results["user_universal"].output_dir, "perturbations")])
    return results
