"""The rotation-augmentation sweep (beyond the paper): how the range of the
training rotations changes a model's universal vulnerability.

For each training range r and model: the model trained with its inputs
rotated uniformly in [-r, r] (the engine's train stage, exported to
`<export_dir>/<dataset>-<model>-rot<r>`), then on two test sets, the
official test images upright and the data stage's rotated ones: the
gradient and DeepFool directions (the directions stage), the SVD-UAPs of
m = 100 and of all attacked inputs with random directions beside them (the
universal stage), and the clean accuracy, the rotation invariance and the
top-5 spectrum fraction (`sweep_stages.MEASURES_STAGE`). Every step is a
cached stage with run-all's seeds, grids and parameters, so a rerun with one
more range trains and measures only that range. The report
(`<run_dir>/report/sweep.md`, `<run_dir>/metrics.json`) reads the follow-up
paper's claim (`keras_uap.report.sweep_report`).
"""

import dataclasses
import math
import numbers
import os

from keras_uap.data.sources import resolve_data_dir
from keras_uap.errors import UserError
from keras_uap.gpu_determinism import warn_nondeterministic_gpu_ops
from keras_uap.models import MODELS
from keras_uap.pipelines.model_stages import ModelRun, collect_directions, directions_inputs, evaluate_universal
from keras_uap.pipelines.runner import publish_file, read_lineage, run_stage, use_deterministic_kernels
from keras_uap.pipelines.study import check_models, export_path, prepare_data, train
from keras_uap.pipelines.sweep_report_stage import SWEEP_REPORT_STAGE
from keras_uap.pipelines.sweep_stages import MEASURES_STAGE, UPRIGHT_TEST_STAGE, cell_name
from keras_uap.report.sweep_report import SAMPLE_SIZE, SWEEP_ATTACKS, TEST_SETS

__all__ = ["DEFAULT_RANGES", "QUICK_RANGES", "DEFAULT_MODELS", "check_ranges", "export_name", "measure",
           "report_sweep", "run_sweep", "ERROR_RATE_NORM", "SWEEP_MODEL_SETTINGS",
           "sweep_model_settings"]

# The L2 norm at which the sweep reads each SVD-UAP's error rate (the
# transfer table's norm; a digit's own L2 norm is about 9).
ERROR_RATE_NORM = 6.0

DEFAULT_RANGES = (0.0, 45.0, 90.0, 180.0)
QUICK_RANGES = (0.0, 180.0)
DEFAULT_MODELS = ("stdcnn", "gcnn")

# The sweep repeats a model's attacks and curves on two test sets at every
# range: eight times run-all's per model at four ranges. At run-all's full
# size the StdCNN and GCNN sweep would take about three hours here, so every
# model gets the settings run-all already gives RotEqNet for the same reason:
# DeepFool on a seeded random 2,000 of the test inputs and curves on a seeded
# random 2,000 (the gradient still attacks all of them).
SWEEP_MODEL_SETTINGS = {
    model: {"directions": {"deepfool_subset": 2000}, "universal": {"eval_subset": 2000}}
    for model in ("stdcnn", "gcnn")
}


def sweep_model_settings(model_settings):
    """`model_settings` ({model: {stage: {field: value}}}, run-all's) with
    `SWEEP_MODEL_SETTINGS` added; a setting already there is kept."""
    merged = {model: {stage: dict(fields) for stage, fields in stages.items()}
              for model, stages in model_settings.items()}
    for model, stages in SWEEP_MODEL_SETTINGS.items():
        for stage, fields in stages.items():
            chosen = merged.setdefault(model, {}).setdefault(stage, {})
            for field, value in fields.items():
                chosen.setdefault(field, value)
    return merged


def check_ranges(ranges):
    """The training ranges as sorted distinct floats in [0, 180] degrees, at
    least two of them; else a UserError."""
    ok = all(isinstance(r, numbers.Real) and not isinstance(r, bool) and math.isfinite(r) for r in ranges)
    if not ok or any(not 0 <= r <= 180 for r in ranges):
        raise UserError(f"rotation ranges must be numbers of degrees in [0, 180], got {list(ranges)!r}")
    chosen = tuple(sorted({float(r) for r in ranges}))
    if len(chosen) < 2:
        raise UserError(f"a sweep needs at least two distinct rotation ranges, got {list(ranges)!r}")
    return chosen


def export_name(model, rotation):
    """The export's name under `export_dir` (after the dataset): `<model>-rot<r>`."""
    return f"{model}-rot{rotation:g}"


def _sweep_dir(cfg, *parts):
    return os.path.join(cfg.run_dir, "sweep", *parts)


def prepare_upright_test(cfg, log=None):
    """The official test images, unrotated, in the data stage's format."""
    source_dir = resolve_data_dir(cfg.data.dataset, cfg.data_dir)
    return run_stage(UPRIGHT_TEST_STAGE, _sweep_dir(cfg, "upright_test"),
                     inputs={"source_dir": source_dir} if source_dir else {},
                     params={"dataset": cfg.data.dataset, "test_size": cfg.data.test_size}, force=cfg.force, log=log)


def measure(cfg, model, name, model_file, test_sets, log=None):
    """Directions, universal curves and measures of one trained model on each
    test set ({label: test.npz}); returns {label: {"directions": {attack:
    StageResult}, "universal": StageResult, "measures": StageResult}}.

    `model` picks the profile's per-model settings (`StudyConfig.for_model`)
    and `name` (e.g. "stdcnn-rot45") the stages' directories.
    """
    cfg = cfg.for_model(model)
    found = {}
    for label, test_data in test_sets.items():
        cell = f"{name}-{label}"
        run = ModelRun(run_dir=_sweep_dir(cfg), seed=cfg.seed, tag=cell, model=cell, model_file=model_file,
                       test_data=test_data, strategy=cfg.strategy, progress=cfg.progress, force=cfg.force, log=log)
        directions = {attack: collect_directions(run, attack, cfg.directions) for attack in SWEEP_ATTACKS}
        # m = 100 and every attacked input: the stage draws min(m, attacked) of them.
        universal = dataclasses.replace(cfg.universal, sample_sizes=(SAMPLE_SIZE, cfg.data.test_size))
        found[label] = {
            "directions": directions,
            "universal": evaluate_universal(run, directions, universal),
            "measures": run_stage(MEASURES_STAGE, _sweep_dir(cfg, "measures", cell),
                                  inputs={"model_file": model_file, "test_data": test_data,
                                          **directions_inputs(directions)},
                                  params={"seed": cfg.seed}, settings={"batch_size": cfg.universal.batch_size},
                                  force=cfg.force, log=log),
        }
    return found


def report_sweep(cfg, models, ranges, measured, log=None, norm=ERROR_RATE_NORM):
    """The report stage over `measured` {(model, range): measure(...)}, the
    error rate read at L2 norm `norm`; publishes `<run_dir>/metrics.json`."""
    inputs = {}
    for model in models:
        for rotation in ranges:
            for label in TEST_SETS:
                stages = measured[model, rotation][label]
                inputs[f"universal_{cell_name(model, rotation, label)}"] = os.path.join(
                    stages["universal"].output_dir, "universal.json")
                inputs[f"measures_{cell_name(model, rotation, label)}"] = os.path.join(
                    stages["measures"].output_dir, "measures.json")
    result = run_stage(SWEEP_REPORT_STAGE, os.path.join(cfg.run_dir, "report"), inputs=inputs,
                       params={"models": list(models), "ranges": list(ranges), "test_sets": list(TEST_SETS),
                               "norm": norm},
                       force=cfg.force, log=log)
    publish_file(os.path.join(result.output_dir, "metrics.json"), os.path.join(cfg.run_dir, "metrics.json"))
    return result


def _check_own_run_dir(run_dir):
    lineage = read_lineage(os.path.join(run_dir, "report"))
    if lineage and lineage.get("stage") != SWEEP_REPORT_STAGE.name:
        raise UserError(f"--run-dir {run_dir} holds a run-all report; give the sweep its own run directory")


def run_sweep(cfg, models=DEFAULT_MODELS, ranges=DEFAULT_RANGES, log=None):
    """The sweep over `models` and training `ranges` (degrees); returns
    {label: StageResult}. The error rate is read at L2 norm `ERROR_RATE_NORM`."""
    check_models(models)
    ranges = check_ranges(ranges)
    _check_own_run_dir(cfg.run_dir)
    use_deterministic_kernels()
    warn_nondeterministic_gpu_ops({name: MODELS[name] for name in models})
    data = prepare_data(cfg, log)
    results = {"data": data, "upright_test": prepare_upright_test(cfg, log)}
    test_sets = {"upright": os.path.join(results["upright_test"].output_dir, "test.npz"),
                 "rotated": os.path.join(data.output_dir, "test.npz")}
    measured = {}
    for model in models:
        for rotation in ranges:
            name = export_name(model, rotation)
            chosen = cfg.replace_params(**{"train.rotation": rotation})
            results[f"train-{name}"] = train(chosen, model, log, data=data, name=name)
            model_file = os.path.join(export_path(cfg, name), "model.keras")
            measured[model, rotation] = measure(cfg, model, name, model_file, test_sets, log)
            for label, stages in measured[model, rotation].items():
                results.update({f"directions-{name}-{label}-{attack}": result
                                for attack, result in stages["directions"].items()})
                results.update({f"{stage}-{name}-{label}": stages[stage] for stage in ("universal", "measures")})
    results["report"] = report_sweep(cfg, models, ranges, measured, log)
    return results
