"""The study on the user's own model and data: `run-all`'s stages
(`keras_uap.pipelines.model_stages`) on any image classifier (a `.keras`
file or a TF SavedModel directory) and any labelled image set (an `.npz`
with `x` and `y`, an IDX directory or a TensorFlow Datasets name).

`run_user_study(UserStudyConfig(UserDataParams(model_path=..., data=...)))` runs:

| stage | output (under the run directory) |
|---|---|
| `user_data` | `user_data/{test.npz,summary.json}`: the images (after `limit`), checked against the model, with their range |
| `directions` | `directions/model-<attack>/directions.npz`: per-input attack directions of every loaded input |
| `analysis` (switchable) | `analysis/model/analysis.json`: spectra and the theory checks of Section 5 |
| `universal` | `universal/model/{universal.json,perturbations/model-<attack>-m<m>.npy}`: L2 curves beside random directions; each sample's top singular values and (switchable) every published vector's L-infinity curve |
| `comparison` (switchable) | `comparison/model/comparison.json`: SVD-UAP against the iterative UAP, class-mean and random directions, L2 and L-infinity |
| `user_report` | `user_report/{report.md,metrics.json,figures/}` |

and then publishes `<run-dir>/metrics.json` and `<run-dir>/perturbations/`
(`publish_run_outputs`, as `run-all` does).

What `run-all` has beyond this is the paper's: its data, its three models
and their training, the invariant directions and their comparison with the
attacks', Table 1, the paper's claims and the transfer across its models.

For each sample size m the inputs drawn are the ones
`keras_uap.api.svd_universal_perturbation(model, x, y, attack, sample_size=m,
seed=seed, sign_norms=<the L2 grid>)` attacks, so each perturbation is the
one that call returns. Error and fooling rates are measured on every loaded
input over the whole L2 grid, and (`universal.linf_grid`) those of every published
vector's sign over the L-infinity grid.

Caching and lineage are those of `keras_uap.pipelines.runner`: the inputs
are the model and data files by content, the parameters everything that
changes the numbers; the strategy, evaluation batch sizes and progress
display are settings outside the cache key.
"""

import dataclasses
import json
import math
import os

import numpy as np

from keras_uap.api import ATTACKS, STRATEGIES
from keras_uap.method import L2_GRID, PAPER_ATTACKS, l2_scale
from keras_uap.api._checks import range_if_outside
from keras_uap.errors import UserError
from keras_uap.pipelines import model_stages
from keras_uap.pipelines.comparison_stage import DEFAULT_LINF_GRID
from keras_uap.pipelines.paths import check_output_dir
from keras_uap.pipelines.code_versions import code_version
from keras_uap.pipelines.data_stage import save_split
from keras_uap.pipelines.runner import Stage, publish_run_outputs, recorded_timings, run_stage
from keras_uap.pipelines.stage_params import (
    AnalysisParams,
    ComparisonParams,
    DirectionsParams,
    UniversalParams,
    replace_stage_fields,
)

__all__ = ["UserStudyConfig", "UserDataParams", "run_user_study", "USER_DATA_STAGE", "USER_REPORT_STAGE", "MODEL_NAME",
           "USER_DIRECTIONS", "USER_ANALYSIS", "USER_UNIVERSAL", "USER_COMPARISON"]

# The name the model stages record for the user's model (and prefix its perturbation files with).
MODEL_NAME = "model"
RANDOM_SEEDS = (0, 1, 2)
# The singular values recorded per sample: enough to see the top of the
# spectrum flatten or steepen with m, few enough to tabulate.
SPECTRUM_TOP = 20
# The user study's stage parameters (run-all's dataclasses, `stage_params`):
# every loaded input attacked, one sample per m (the run's seed), every curve
# over the whole grid with the samples' spectra and the L-infinity curves, no
# invariant rotation. The L2 and L-infinity grids and the iterative UAP's
# radii are run-all's, for 784-value images in [0, 1]; `for_data` scales them.
USER_DIRECTIONS = DirectionsParams(limit=None, deepfool_subset=None, pgd_subset=None, batch_size=128)
USER_ANALYSIS = AnalysisParams(invariant_angle=None)
USER_UNIVERSAL = UniversalParams(sample_sizes=(100, 500), seeds=(0,), random_seeds=RANDOM_SEEDS, eps_grid=L2_GRID,
                                 saturation=None, full_set_only=(), eval_subset=None, linf_grid=DEFAULT_LINF_GRID,
                                 spectrum_top=SPECTRUM_TOP, batch_size=1000)
USER_COMPARISON = ComparisonParams(sample_sizes=(100, 500), batch_size=1000)

_STAGE_FIELDS = ("user_data", "directions", "analysis", "universal", "comparison")


@dataclasses.dataclass(frozen=True)
class UserDataParams:
    """The `user_data` stage: the user's model and images.

    Attributes:
        model_path: a `.keras` (or `.h5`) file or a TF SavedModel directory.
        data: an `.npz` file (arrays `x`, `y`), an IDX directory, or a
            TensorFlow Datasets name.
        split: which split to load ("test", "train", or a TFDS split).
        limit: use only the first `limit` inputs (None: all). Every input
            used is attacked once per attack.
        clip_min, clip_max: the valid input range; the data must lie in it.
    """

    model_path: str
    data: str
    split: str = "test"
    limit: int | None = None
    clip_min: float = 0.0
    clip_max: float = 1.0


@dataclasses.dataclass(frozen=True)
class UserStudyConfig:
    """Everything a user study depends on: the shared run fields and one
    parameter dataclass per stage, run-all's (`stage_params`) with the user
    study's defaults (`USER_DIRECTIONS`, ...).

    Set stage fields with `replace_params`, e.g.
    `cfg.replace_params(**{"universal.eps_grid": (1.0, 2.0)})`: it records
    them in `user_set`, which `for_data` leaves as they are.

    Attributes:
        user_data: the model and the images (`UserDataParams`).
        attacks: attack names among `keras_uap.api.ATTACKS` (default: the paper's).
        directions, analysis, universal, comparison: the stages' parameters.
            Before the stages run, `for_data` fits them to the loaded inputs:
            `universal.eps_grid` (the L2 norms of the curves, also those
            over which each vector's sign is chosen) scaled to the inputs'
            size and range (`l2_scale`), `comparison.linf_grid` (the
            L-infinity budgets) to their range, `universal.linf_grid` (the
            budgets of every published vector's sign; () for none) and
            `comparison.sample_sizes` following them and
            `universal.sample_sizes`, the iterative UAP's radii scaled as the
            grids are, and `universal.seeds` the run's seed.
        analysis_enabled: run the analysis stage (spectra and theory checks).
        comparison_enabled: run the comparison stage (iterative UAP,
            class-mean and random directions; L2 and L-infinity curves).
        strategy: "none" or "mirrored" (`keras_uap.api.make_strategy`).
        seed: seeds the samples.
        run_dir: where the stage outputs go.
        force: redo stages even when cached.
        progress: `progress(done, total)` for long loops, or None.
        user_set: "stage.field" names the user chose; `for_data` leaves them alone.
    """

    user_data: UserDataParams
    attacks: tuple = PAPER_ATTACKS
    directions: DirectionsParams = USER_DIRECTIONS
    analysis: AnalysisParams = USER_ANALYSIS
    universal: UniversalParams = USER_UNIVERSAL
    comparison: ComparisonParams = USER_COMPARISON
    analysis_enabled: bool = True
    comparison_enabled: bool = True
    strategy: str = "none"
    seed: int = 0
    run_dir: str = "runs/study"
    force: bool = False
    progress: object = None
    user_set: tuple = ()

    def replace_params(self, **changes):
        """This configuration with `changes` {"stage.field": value} applied
        and recorded in `user_set`."""
        chosen = replace_stage_fields(self, _STAGE_FIELDS, changes, "universal.eps_grid")
        return dataclasses.replace(chosen, user_set=tuple(dict.fromkeys((*self.user_set, *changes))))

    def for_data(self, input_shape, n):
        """This configuration fitted to `n` loaded inputs of `input_shape`:
        the defaults that depend on the data scaled to it (the fields in
        `user_set` as they are), every m at most n, 0 left out of the grids.
        Apply it once, to the configuration as the user chose it."""
        clip_min, clip_max = self.user_data.clip_min, self.user_data.clip_max
        scale, span = l2_scale(input_shape, clip_min, clip_max), float(clip_max) - float(clip_min)
        universal, comparison = self.universal, self.comparison

        def fitted(name, value):
            """The field `name` ("stage.field") as the user set it, or else `value`."""
            stage, _, field = name.partition(".")
            return getattr(getattr(self, stage), field) if name in self.user_set else value

        def grid(values):
            return _positive(float(e) for e in values)

        def sizes(values):
            return _positive(min(int(m), n) for m in values)

        linf_grid = grid(fitted("comparison.linf_grid", [span * e for e in comparison.linf_grid]))
        universal = dataclasses.replace(
            universal, sample_sizes=sizes(universal.sample_sizes), seeds=fitted("universal.seeds", (self.seed,)),
            eps_grid=grid(fitted("universal.eps_grid", [scale * e for e in universal.eps_grid])),
            linf_grid=grid(fitted("universal.linf_grid", linf_grid)))
        comparison = dataclasses.replace(
            comparison, sample_sizes=sizes(fitted("comparison.sample_sizes", universal.sample_sizes)),
            linf_grid=linf_grid, build_eps=fitted("comparison.build_eps", comparison.build_eps * scale),
            linf_build_budget=fitted("comparison.linf_build_budget", comparison.linf_build_budget * span))
        return dataclasses.replace(self, universal=universal, comparison=comparison)

    def validate(self):
        """This configuration, or a UserError naming the first bad value."""
        data = self.user_data
        if not os.path.exists(data.model_path):
            raise UserError(f"{data.model_path}: model not found")
        if not os.path.exists(data.data) and _looks_like_path(data.data):
            raise UserError(f"{data.data}: data not found")
        if not self.attacks:
            raise UserError(f"no attack chosen; choose from: {', '.join(ATTACKS)}")
        for attack in self.attacks:
            if attack not in ATTACKS:
                raise UserError(f"unknown attack {attack!r}; choose from: {', '.join(ATTACKS)}")
        sizes = self.universal.sample_sizes
        if not sizes or any(not isinstance(m, int) or m < 1 for m in sizes):
            raise UserError(f"--sample-sizes must be integers >= 1, got {list(sizes)}")
        if data.limit is not None and data.limit < 1:
            raise UserError(f"--limit must be at least 1, got {data.limit}")
        if self.strategy not in STRATEGIES:
            raise UserError(f"unknown strategy {self.strategy!r}; choose from: {', '.join(STRATEGIES)}")
        for option, grid in (("--eps", self.universal.eps_grid), ("--linf-eps", self.comparison.linf_grid)):
            if not grid or any(not math.isfinite(e) or e < 0 for e in grid) or not any(e > 0 for e in grid):
                raise UserError(f"{option} must be finite norms >= 0, at least one positive, got {list(grid)}")
        if not (math.isfinite(data.clip_min) and math.isfinite(data.clip_max) and data.clip_min < data.clip_max):
            raise UserError(f"--clip-min must be below --clip-max, got {data.clip_min} and {data.clip_max}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"--seed must be an integer >= 0, got {self.seed!r}")
        check_output_dir(self.run_dir, "--run-dir")
        return self


def _positive(values):
    """`values` sorted, each once, those <= 0 left out."""
    return tuple(sorted({v for v in values if v > 0}))


def _looks_like_path(text):
    """Whether `text` names a file rather than a TFDS data set (as `load_images` decides)."""
    return os.sep in text or text.startswith(".") or text.endswith(".npz")


# --- Stage bodies ----------------------------------------------------------------


def _write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=1)


def _user_data_stage(output_dir, model, tfds_name, split, limit, clip_min, clip_max, data=None):
    """Loads and checks the images against the model; writes `test.npz` (x, y,
    clip_min, clip_max: the data stage's layout, which the model stages read)
    and `summary.json`."""
    from keras_uap.api import check_compatible, load_classifier, load_images

    classifier = load_classifier(model)
    x, y = load_images(data if data is not None else tfds_name, split=split, limit=limit)
    check_compatible(classifier, x, y)
    outside = range_if_outside(x, clip_min, clip_max)
    if outside:
        raise UserError(f"the images lie in [{outside[0]:g}, {outside[1]:g}], outside --clip-min {clip_min:g} / "
                        f"--clip-max {clip_max:g}; set those to the data's range")
    low, high = float(x.min()), float(x.max())
    save_split(os.path.join(output_dir, "test.npz"), x, y, clip_min, clip_max)
    summary = {"n": int(len(x)), "input_shape": list(x.shape[1:]), "num_classes": classifier.num_classes,
               "output": classifier.output, "pixel_range": [low, high],
               "label_counts": np.bincount(y, minlength=classifier.num_classes).tolist()}
    _write_json(os.path.join(output_dir, "summary.json"), summary)
    return {"n": summary["n"], "input_shape": summary["input_shape"], "num_classes": summary["num_classes"]}


def _user_report_stage(output_dir, summary, universal, analysis=None, comparison=None, timings=None, sources=None):
    """`report.md`, `metrics.json` and `figures/` from the model stages' artifacts."""
    from keras_uap.pipelines.user_report import build_user_report

    with open(summary) as f:
        data_summary = json.load(f)
    metrics = build_user_report(output_dir, data_summary, universal, analysis, comparison, timings or {},
                                sources or {})
    return {"figures": len(metrics["figures"])}


# --- Stages ------------------------------------------------------------------------

USER_DATA_STAGE = Stage(
    name="user_data",
    fn=_user_data_stage,
    version=code_version("2", __name__),
    inputs=("model", "data"),
    params=("tfds_name", "split", "limit", "clip_min", "clip_max"),
)
USER_REPORT_STAGE = Stage(
    name="user_report",
    fn=_user_report_stage,
    version=code_version("2", __name__),
    inputs=("summary", "universal", "analysis", "comparison"),
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
        "user_data", "directions-model-<attack>" per attack,
        "analysis-model" (with `cfg.analysis_enabled`), "universal-model",
        "comparison-model" (with `cfg.comparison_enabled`), "user_report".

    Raises:
        UserError: a bad setting, a missing or unreadable model or data set,
            or data that does not fit the model (shape, labels, range).
    """
    cfg.validate()
    data = cfg.user_data
    is_path = os.path.exists(data.data)
    results = {"user_data": run_stage(
        USER_DATA_STAGE, os.path.join(cfg.run_dir, "user_data"),
        inputs={"model": data.model_path, **({"data": data.data} if is_path else {})},
        params={"tfds_name": None if is_path else data.data, "split": data.split, "limit": data.limit,
                "clip_min": float(data.clip_min), "clip_max": float(data.clip_max)},
        force=cfg.force, log=log)}
    summary = results["user_data"].summary
    n = summary["n"]
    if log and max(cfg.universal.sample_sizes) > n:
        log(f"--sample-sizes {', '.join(str(m) for m in sorted(cfg.universal.sample_sizes) if m > n)}: only {n} "
            f"inputs, so the SVD uses all {n}")
    fitted = cfg.for_data(tuple(summary["input_shape"]), n)
    run = model_stages.ModelRun(
        run_dir=cfg.run_dir, seed=cfg.seed, tag=MODEL_NAME, model=MODEL_NAME, model_file=data.model_path,
        test_data=os.path.join(results["user_data"].output_dir, "test.npz"), strategy=cfg.strategy,
        progress=cfg.progress, force=cfg.force, log=log)
    directions = {attack: model_stages.collect_directions(run, attack, fitted.directions)
                  for attack in ATTACKS if attack in cfg.attacks}
    results.update({f"directions-{MODEL_NAME}-{attack}": r for attack, r in directions.items()})
    if cfg.analysis_enabled:
        results[f"analysis-{MODEL_NAME}"] = model_stages.analyse(run, directions, fitted.analysis)
    universal = results[f"universal-{MODEL_NAME}"] = model_stages.evaluate_universal(run, directions,
                                                                                     fitted.universal)
    if cfg.comparison_enabled:
        results[f"comparison-{MODEL_NAME}"] = model_stages.compare_methods(run, fitted.comparison, fitted.universal,
                                                                           fitted.directions.limit, universal)
    report_inputs = {"summary": os.path.join(results["user_data"].output_dir, "summary.json"),
                     "universal": universal.output_dir}
    for name in ("analysis", "comparison"):
        if f"{name}-{MODEL_NAME}" in results:
            report_inputs[name] = os.path.join(results[f"{name}-{MODEL_NAME}"].output_dir, f"{name}.json")
    results["user_report"] = run_stage(
        USER_REPORT_STAGE, os.path.join(cfg.run_dir, "user_report"), inputs=report_inputs,
        settings={"timings": recorded_timings(results),
                  "sources": {"model": os.path.abspath(data.model_path),
                              "data": os.path.abspath(data.data) if is_path else data.data, "split": data.split}},
        force=cfg.force, log=log)
    publish_run_outputs(cfg.run_dir, os.path.join(results["user_report"].output_dir, "metrics.json"),
                        [os.path.join(universal.output_dir, "perturbations")])
    return results
