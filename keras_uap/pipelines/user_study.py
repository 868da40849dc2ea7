"""The study on the user's own model and data: `run-all`'s stages
(`keras_uap.pipelines.model_stages`) on any image classifier (a `.keras`
file or a TF SavedModel directory) and any labelled image set (an `.npz`
with `x` and `y`, an IDX directory or a TensorFlow Datasets name).

`run_user_study(UserStudyConfig(model_path=..., data=...))` runs:

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
input over the whole L2 grid, and (`linf_curves`) those of every published
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
from keras_uap.method import PAPER_ATTACKS, default_sign_norms, l2_scale
from keras_uap.api._checks import range_if_outside
from keras_uap.errors import UserError
from keras_uap.pipelines import model_stages
from keras_uap.pipelines.comparison_stage import DEFAULT_LINF_GRID
from keras_uap.pipelines.paths import check_output_dir
from keras_uap.pipelines.code_versions import code_version
from keras_uap.pipelines.runner import Stage, publish_run_outputs, recorded_timings, run_stage
from keras_uap.pipelines.stage_params import AnalysisParams, ComparisonParams, DirectionsParams, UniversalParams

__all__ = ["UserStudyConfig", "run_user_study", "USER_DATA_STAGE", "USER_REPORT_STAGE", "MODEL_NAME"]

# The name the model stages record for the user's model (and prefix its perturbation files with).
MODEL_NAME = "model"
RANDOM_SEEDS = (0, 1, 2)
# The singular values recorded per sample: enough to see the top of the
# spectrum flatten or steepen with m, few enough to tabulate.
SPECTRUM_TOP = 20
# run-all's iterative-UAP radii, for 784-value images in [0, 1] (`ComparisonParams`).
_COMPARISON = ComparisonParams()


@dataclasses.dataclass(frozen=True)
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
        limit: use only the first `limit` inputs (None: all). Every input
            used is attacked once per attack.
        eps: the L2 norms of the curves, data units, also those over which
            each vector's sign is chosen (None: `l2_grid`'s default).
        linf_eps: the L-infinity budgets of the L-infinity curves and the
            comparison (None: run-all's 0.05 to 0.3 times `clip_max - clip_min`).
        linf_curves: also measure every published vector's L-infinity step
            (its sign) over `linf_grid`, for every attack and m, beside
            random sign vectors.
        sample_spectra: record the top `SPECTRUM_TOP` singular values of
            the m directions each published vector was built from.
        analysis: run the analysis stage (spectra and theory checks).
        comparison: run the comparison stage (iterative UAP, class-mean and
            random directions; L2 and L-infinity curves).
        strategy: "none" or "mirrored" (`keras_uap.api.make_strategy`).
        seed: seeds the samples.
        run_dir: where the stage outputs go.
        force: redo stages even when cached.
        attack_batch_size, eval_batch_size: inputs per batch (the first is
            part of the directions' cache key, as in run-all).
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
    linf_eps: tuple | None = None
    linf_curves: bool = True
    sample_spectra: bool = True
    analysis: bool = True
    comparison: bool = True
    strategy: str = "none"
    seed: int = 0
    run_dir: str = "runs/study"
    force: bool = False
    attack_batch_size: int = 128
    eval_batch_size: int = 1000
    progress: object = None

    def l2_grid(self, input_shape):
        """The L2 norms of the curves (0 left out): `eps`, or else run-all's
        grid scaled to the inputs' size and range (`default_sign_norms`, the
        API's default sign norms)."""
        grid = default_sign_norms(input_shape, self.clip_min, self.clip_max) if self.eps is None else self.eps
        return tuple(sorted({float(e) for e in grid if float(e) > 0}))

    def linf_grid(self):
        """The L-infinity budgets of the curves and the comparison (0 left out)."""
        grid = [(self.clip_max - self.clip_min) * e for e in DEFAULT_LINF_GRID] if self.linf_eps is None \
            else self.linf_eps
        return tuple(sorted({float(e) for e in grid if float(e) > 0}))

    def stage_params(self, input_shape, n):
        """(DirectionsParams, AnalysisParams, UniversalParams, ComparisonParams)
        for `n` loaded inputs of `input_shape`: every input attacked, one
        sample per m (m at most n), every curve over the whole grid (and,
        as switched, the L-infinity grid and each sample's spectrum), the
        iterative UAP's radii scaled to the inputs as the grid is."""
        sizes = tuple(sorted({min(int(m), n) for m in self.sample_sizes}))
        scale, span = l2_scale(input_shape, self.clip_min, self.clip_max), self.clip_max - self.clip_min
        directions = DirectionsParams(limit=None, deepfool_subset=None, pgd_subset=None,
                                      batch_size=self.attack_batch_size)
        analysis = AnalysisParams(invariant_angle=None)
        universal = UniversalParams(sample_sizes=sizes, seeds=(self.seed,), random_seeds=RANDOM_SEEDS,
                                    eps_grid=self.l2_grid(input_shape), saturation=None, full_set_only=(),
                                    eval_subset=None, linf_grid=self.linf_grid() if self.linf_curves else (),
                                    spectrum_top=SPECTRUM_TOP if self.sample_spectra else 0,
                                    batch_size=self.eval_batch_size)
        comparison = ComparisonParams(sample_sizes=sizes, build_eps=_COMPARISON.build_eps * scale,
                                      linf_grid=self.linf_grid(),
                                      linf_build_budget=_COMPARISON.linf_build_budget * span,
                                      batch_size=self.eval_batch_size)
        return directions, analysis, universal, comparison

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
        if self.strategy not in STRATEGIES:
            raise UserError(f"unknown strategy {self.strategy!r}; choose from: {', '.join(STRATEGIES)}")
        for option, grid in (("--eps", self.eps), ("--linf-eps", self.linf_eps)):
            if grid is not None and (not grid or any(not math.isfinite(e) or e < 0 for e in grid)
                                     or not any(e > 0 for e in grid)):
                raise UserError(f"{option} must be finite norms >= 0, at least one positive, got {list(grid)}")
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
    np.savez(os.path.join(output_dir, "test.npz"), x=x, y=y, clip_min=np.float32(clip_min),
             clip_max=np.float32(clip_max))
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
        "analysis-model" (with `cfg.analysis`), "universal-model",
        "comparison-model" (with `cfg.comparison`), "user_report".

    Raises:
        UserError: a bad setting, a missing or unreadable model or data set,
            or data that does not fit the model (shape, labels, range).
    """
    cfg.validate()
    is_path = os.path.exists(cfg.data)
    results = {"user_data": run_stage(
        USER_DATA_STAGE, os.path.join(cfg.run_dir, "user_data"),
        inputs={"model": cfg.model_path, **({"data": cfg.data} if is_path else {})},
        params={"tfds_name": None if is_path else cfg.data, "split": cfg.split, "limit": cfg.limit,
                "clip_min": float(cfg.clip_min), "clip_max": float(cfg.clip_max)},
        force=cfg.force, log=log)}
    summary = results["user_data"].summary
    n = summary["n"]
    if log and max(cfg.sample_sizes) > n:
        log(f"--sample-sizes {', '.join(str(m) for m in sorted(cfg.sample_sizes) if m > n)}: only {n} inputs, "
            f"so the SVD uses all {n}")
    directions_params, analysis_params, universal_params, comparison_params = cfg.stage_params(
        tuple(summary["input_shape"]), n)
    run = model_stages.ModelRun(
        run_dir=cfg.run_dir, seed=cfg.seed, tag=MODEL_NAME, model=MODEL_NAME, model_file=cfg.model_path,
        test_data=os.path.join(results["user_data"].output_dir, "test.npz"), strategy=cfg.strategy,
        progress=cfg.progress, force=cfg.force, log=log)
    directions = {attack: model_stages.collect_directions(run, attack, directions_params)
                  for attack in ATTACKS if attack in cfg.attacks}
    results.update({f"directions-{MODEL_NAME}-{attack}": r for attack, r in directions.items()})
    if cfg.analysis:
        results[f"analysis-{MODEL_NAME}"] = model_stages.analyse(run, directions, analysis_params)
    universal = results[f"universal-{MODEL_NAME}"] = model_stages.evaluate_universal(run, directions,
                                                                                     universal_params)
    if cfg.comparison:
        results[f"comparison-{MODEL_NAME}"] = model_stages.compare_methods(run, comparison_params, universal_params,
                                                                           directions_params.limit, universal)
    report_inputs = {"summary": os.path.join(results["user_data"].output_dir, "summary.json"),
                     "universal": universal.output_dir}
    for name in ("analysis", "comparison"):
        if f"{name}-{MODEL_NAME}" in results:
            report_inputs[name] = os.path.join(results[f"{name}-{MODEL_NAME}"].output_dir, f"{name}.json")
    results["user_report"] = run_stage(
        USER_REPORT_STAGE, os.path.join(cfg.run_dir, "user_report"), inputs=report_inputs,
        settings={"timings": recorded_timings(results),
                  "sources": {"model": os.path.abspath(cfg.model_path),
                              "data": os.path.abspath(cfg.data) if is_path else cfg.data, "split": cfg.split}},
        force=cfg.force, log=log)
    publish_run_outputs(cfg.run_dir, os.path.join(results["user_report"].output_dir, "metrics.json"),
                        [os.path.join(universal.output_dir, "perturbations")])
    return results
