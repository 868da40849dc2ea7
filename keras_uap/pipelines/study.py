"""The study as a chain of cached stages: data, training of each model,
attack directions, analysis, universal-attack curves and the report.

`StudyConfig` holds everything a run depends on, one parameter dataclass
per stage (`keras_uap.pipelines.stage_params`); the two profiles are the
paper's (full data, 10 epochs) and a quick smoke run. `model_settings`
adjusts a profile per model (RotEqNet's training and its two most expensive
stages); `StudyConfig.for_model` applies them. With several training seeds
(`StudyConfig.training_seeds`) the model stages run once per seed and the
report sets the seeds' numbers side by side.
"""

import dataclasses
import os

from keras_uap.api.distribute import STRATEGIES, make_strategy
from keras_uap.data.sources import DATA_DIR_ENV, resolve_data_dir
from keras_uap.errors import UserError
from keras_uap.models import MODELS
from keras_uap.pipelines import model_stages
from keras_uap.pipelines.data_stage import DATA_STAGE
from keras_uap.method import ATTACK_NAMES
from keras_uap.pipelines.model_stages import ModelRun
from keras_uap.pipelines.report_stage import REPORT_STAGE
from keras_uap.pipelines.paths import check_input_dir, check_output_dir, model_tag
from keras_uap.gpu_determinism import warn_nondeterministic_gpu_ops
from keras_uap.pipelines.runner import publish_run_outputs, recorded_timings, run_stage, use_deterministic_kernels
from keras_uap.pipelines.stage_params import (
    AnalysisParams,
    ComparisonParams,
    DataParams,
    DirectionsParams,
    TrainParams,
    TransferParams,
    UniversalParams,
    cache_params,
    replace_stage_fields,
    settings_of,
)
from keras_uap.pipelines.train_stage import TRAIN_STAGE
from keras_uap.pipelines.transfer_stage import TRANSFER_STAGE

__all__ = ["StudyConfig", "quick_config", "check_models", "DEFAULT_MODEL_SETTINGS", "QUICK_MODEL_SETTINGS", "prepare_data", "train", "collect_directions", "run_all",
           "compare_methods", "transfer", "export_path", "STAGES", "stages_for"]


# RotEqNet convolves with 17 orientations of 9x9 filters: on this 2-core CPU
# it trains at ~300 images/s (GCNN ~500) and predicts at ~600 images/s
# (GCNN ~3,300; plain graphs, XLA being slower here: benchmarks/bench_predict.py). With
# the paper's settings its stages alone would take about two hours, so the
# default run trains it with Adam (its authors' optimiser) for 2 epochs,
# runs DeepFool on a random 2,000 of the 10,000 test inputs, and evaluates its
# universal curves on a random 2,000 with one seed per sample size. Its
# iterative UAP runs DeepFool one input at a time (~0.2 s each), so the
# comparison builds every method from m = 100 only.
# {model: {stage field of StudyConfig: {field: value}}}, applied by `StudyConfig.for_model`.
DEFAULT_MODEL_SETTINGS = {
    "roteqnet": {"train": {"epochs": 2, "optimizer": "adam", "learning_rate": 1e-3},
                 "directions": {"deepfool_subset": 2000, "batch_size": 250},
                 "universal": {"eval_subset": 2000, "seeds": (0,), "batch_size": 1000},
                 "comparison": {"sample_sizes": (100,), "batch_size": 1000}},
}
# The quick profile trains on 5,000 images: one epoch of SGD leaves StdCNN and
# GCNN near chance (0.23 and 0.38 test accuracy), three of Adam reach 0.65 and
# 0.85 for 25 s more, enough that the smoke run's curves mean something.
QUICK_MODEL_SETTINGS = {
    "stdcnn": {"train": {"epochs": 3, "optimizer": "adam", "learning_rate": 1e-3}},
    "gcnn": {"train": {"epochs": 3, "optimizer": "adam", "learning_rate": 1e-3}},
    "roteqnet": {"train": {"optimizer": "adam", "learning_rate": 1e-3},
                 "directions": {"deepfool_subset": 100, "batch_size": 250},
                 "universal": {"eval_subset": 200, "batch_size": 500},
                 "comparison": {"batch_size": 500}},
}

_STAGE_FIELDS = ("data", "train", "directions", "analysis", "universal", "comparison", "transfer")


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Everything a run depends on: where it writes, its seed, and one
    parameter dataclass per stage (`keras_uap.pipelines.stage_params`).

    Attributes:
        run_dir, export_dir: where the stages and the exported models go.
        data_dir: the dataset's files (None: `$KERAS_UAP_DATA_DIR` or
            tensorflow-datasets).
        seed: the run's seed, part of every stage's cache key.
        training_seeds: the seeds each model is trained with, `seed` among
            them; () is `seed` alone. Every model stage runs once per
            training seed (`model_seeds`); the attacked inputs, samples and
            evaluation sets stay the run seed's, so that models trained with
            different seeds are measured on the same inputs.
        data ... transfer: the stages' parameters.
        comparison_enabled: run the comparison and transfer stages.
        force, verbose, progress: rerun cached stages; Keras verbosity; a
            callable(done_so_far, total) for long loops, or None.
        strategy: "none" or "mirrored" (`keras_uap.api.make_strategy`):
            the directions stage attacks one whole batch per local device,
            the universal, comparison and transfer stages split each batch
            of predictions over them. A run-time setting, outside the cache
            keys: the numbers are those of one device.
        model_settings: per-model overrides, {model: {stage: {field: value}}}.
        user_set: "stage.field" names the user chose explicitly;
            `model_settings` leave them alone.
    """

    run_dir: str = "runs/default"
    export_dir: str = "saved_models"
    data_dir: str | None = None
    seed: int = 0
    training_seeds: tuple = ()
    data: DataParams = DataParams()
    train: TrainParams = TrainParams()
    directions: DirectionsParams = DirectionsParams()
    analysis: AnalysisParams = AnalysisParams()
    universal: UniversalParams = UniversalParams()
    comparison: ComparisonParams = ComparisonParams()
    transfer: TransferParams = TransferParams()
    # Beyond the paper: every universal-perturbation method from the same
    # samples (comparison stage), the L-infinity table, and transfer.
    comparison_enabled: bool = True
    force: bool = False
    verbose: int = 1
    progress: object = None
    strategy: str = "none"
    model_settings: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_MODEL_SETTINGS))
    user_set: tuple = ()

    @property
    def model_seeds(self):
        """The training seeds, the run's seed first (its models are the report's)."""
        return tuple(dict.fromkeys((self.seed, *self.training_seeds)))

    def for_model(self, model):
        """This configuration with `model_settings[model]` applied, each
        stage's overrides a `dataclasses.replace` of that stage's parameters."""
        replaced = {}
        for stage, fields in self.model_settings.get(model, {}).items():
            chosen = {k: v for k, v in fields.items() if f"{stage}.{k}" not in self.user_set}
            replaced[stage] = dataclasses.replace(getattr(self, stage), **chosen)
        return dataclasses.replace(self, **replaced)

    def replace_params(self, **changes):
        """This configuration with `changes` {"stage.field": value} applied,
        e.g. `cfg.replace_params(**{"train.epochs": 2})`."""
        return replace_stage_fields(self, _STAGE_FIELDS, changes, "train.epochs")

    def validate(self):
        if self.train.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.train.epochs}")
        if self.train.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.train.batch_size}")
        if min(self.data.train_size, self.data.validation_size, self.data.test_size) < 1:
            raise UserError("split sizes must be positive")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"--seed must be an integer >= 0, got {self.seed!r}")
        self._validate_training_seeds()
        if self.strategy not in STRATEGIES:
            raise UserError(f"unknown strategy {self.strategy!r}; choose from: {', '.join(STRATEGIES)}")
        source = resolve_data_dir(self.data.dataset, self.data_dir)
        if source is not None:
            check_input_dir(source, "data directory" if self.data_dir else f"data directory (from ${DATA_DIR_ENV})")
        check_output_dir(self.run_dir, "--run-dir")
        check_output_dir(self.export_dir, "--export-dir")
        return self

    def _validate_training_seeds(self):
        seeds = tuple(self.training_seeds)
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise UserError(f"--training-seeds must be integers >= 0, got {','.join(map(str, seeds))}")
        if len(set(seeds)) != len(seeds):
            raise UserError(f"--training-seeds lists a seed twice: {','.join(map(str, seeds))}")
        if seeds and self.seed not in seeds:
            raise UserError(f"--training-seeds must include the run's --seed {self.seed} (its models are the "
                            f"report's), got {','.join(map(str, seeds))}")


def quick_config(params=None, **overrides):
    """A smoke-run profile: small real subsets and few epochs, under its own
    run and export directories so it never replaces a full export.

    `params` ({"stage.field": value}) and `overrides` (StudyConfig's own
    fields) change the profile; None values are ignored."""
    base = dict(run_dir="runs/quick", model_settings=dict(QUICK_MODEL_SETTINGS))
    base.update({k: v for k, v in overrides.items() if v is not None})
    if base.get("export_dir") is None:
        base["export_dir"] = os.path.join(base["run_dir"], "saved_models")
    # The comparison's m is one of the universal stage's, so that its SVD-UAPs
    # are the published vectors rather than curves of their own.
    quick = {"train.epochs": 1, "data.train_size": 5_000, "data.validation_size": 500, "data.test_size": 1_000,
             "directions.limit": 300, "directions.pgd_subset": 100, "universal.sample_sizes": (50, 10_000),
             "universal.seeds": (0,), "universal.random_seeds": (0, 1), "universal.eval_subset": 500,
             "comparison.sample_sizes": (50,), "comparison.max_passes": 1, "transfer.sample_size": 50}
    quick.update({k: v for k, v in (params or {}).items() if v is not None})
    return StudyConfig(**base).replace_params(**quick)


def _seed_and_tag(cfg, model, training_seed):
    """The seed `model` is trained with (None: the run's) and the name of its outputs (`model_tag`)."""
    seed = cfg.seed if training_seed is None else training_seed
    return seed, model_tag(model, None if seed == cfg.seed else seed)


def export_path(cfg, model, training_seed=None):
    """`<export_dir>/<dataset>-<model>`, `-seed<s>` appended for a training seed other than the run's."""
    return os.path.join(cfg.export_dir, f"{cfg.data.dataset}-{_seed_and_tag(cfg, model, training_seed)[1]}")


def prepare_data(cfg, log=None):
    """Runs (or reuses) the data stage; returns its `StageResult`."""
    source_dir = resolve_data_dir(cfg.data.dataset, cfg.data_dir)
    return run_stage(
        DATA_STAGE,
        os.path.join(cfg.run_dir, "data"),
        inputs={"source_dir": source_dir} if source_dir else {},
        params={**cache_params(cfg.data), "seed": cfg.seed},
        force=cfg.force,
        log=log,
    )


def train(cfg, model, log=None, data=None, training_seed=None, name=None):
    """Trains (or reuses) `model` with `training_seed` (None: the run's seed)
    and exports it to `export_path(cfg, model, training_seed)`, or to
    `<export_dir>/<dataset>-<name>` for a `name` (the sweep's one export per
    rotation range)."""
    check_models([model])
    data = data or prepare_data(cfg, log)
    cfg = cfg.for_model(model)
    seed, tag = _seed_and_tag(cfg, model, training_seed)
    tag = name or tag
    return run_stage(
        TRAIN_STAGE,
        os.path.join(cfg.export_dir, f"{cfg.data.dataset}-{tag}"),
        inputs={"data": data.output_dir},
        params={"model": model, **cache_params(cfg.train), "seed": seed},
        settings={"tensorboard_dir": os.path.join(cfg.run_dir, "tensorboard", f"train-{tag}"),
                  "verbose": cfg.verbose},
        force=cfg.force,
        log=log,
    )


def _model_run(cfg, model, data, log, training_seed):
    """The `ModelRun` of `model` trained with `training_seed` (None: the run's seed)."""
    tag = _seed_and_tag(cfg, model, training_seed)[1]
    return ModelRun(run_dir=cfg.run_dir, seed=cfg.seed, tag=tag, model=model,
                    model_file=os.path.join(export_path(cfg, model, training_seed), "model.keras"),
                    test_data=os.path.join(data.output_dir, "test.npz"), strategy=cfg.strategy,
                    progress=cfg.progress, force=cfg.force, log=log)


def collect_directions(cfg, model, attack, log=None, data=None, training_seed=None):
    """Collects (or reuses) the `attack` directions of the exported `model`
    (trained with `training_seed`, None: the run's seed) on the rotated test
    set. The export must exist (`keras-uap train`)."""
    if attack not in ATTACK_NAMES:
        raise UserError(f"unknown attack {attack!r}; choose one of: {', '.join(ATTACK_NAMES)}")
    seed = _seed_and_tag(cfg, model, training_seed)[0]
    keras_file = os.path.join(export_path(cfg, model, training_seed), "model.keras")
    if not os.path.isfile(keras_file):
        how = (f"keras-uap train --model {model}" if seed == cfg.seed
               else f"keras-uap run-all --models {model} --training-seeds {','.join(map(str, cfg.model_seeds))}")
        raise UserError(f"{keras_file}: no exported {model}; create it with `{how}` (same --export-dir)")
    data = data or prepare_data(cfg, log)
    cfg = cfg.for_model(model)
    return model_stages.collect_directions(_model_run(cfg, model, data, log, training_seed), attack, cfg.directions)


def analyse(cfg, model, directions, data, log=None, training_seed=None):
    """Spectra, invariant directions and theory checks of one model (trained
    with `training_seed`), from its directions results ({attack: StageResult})."""
    return model_stages.analyse(_model_run(cfg, model, data, log, training_seed), directions, cfg.analysis)


def universal_sample_sizes(cfg):
    """The universal stage's sample sizes: the profile's, and the comparison's,
    whose SVD-UAPs are the universal stage's published vectors (also without
    the comparison, so that switching it leaves the universal stage cached)."""
    return tuple(sorted({int(m) for m in (*cfg.universal.sample_sizes, *cfg.comparison.sample_sizes)}))


def evaluate_universal(cfg, model, directions, data, log=None, training_seed=None):
    """Universal-attack curves of one model (trained with `training_seed`)
    from its directions results."""
    cfg = cfg.for_model(model)
    universal = dataclasses.replace(cfg.universal, sample_sizes=universal_sample_sizes(cfg))
    return model_stages.evaluate_universal(_model_run(cfg, model, data, log, training_seed), directions, universal)


def compare_methods(cfg, model, data, log=None, universal=None, training_seed=None):
    """SVD-UAP against the iterative UAP, class-mean and random directions
    for one model (trained with `training_seed`): `model_stages.compare_methods`
    on the attacked inputs and the universal stage's evaluation set, grid and
    saturation. With the model's `universal` result, its SVD-UAPs are the
    vectors that stage published, their curves (and the random one) read from it."""
    cfg = cfg.for_model(model)
    return model_stages.compare_methods(_model_run(cfg, model, data, log, training_seed), cfg.comparison,
                                        cfg.universal, cfg.directions.limit, universal)


def transfer(cfg, models, results, log=None):
    """Each model's comparison perturbations applied to every model, on each
    model's universal evaluation set."""
    inputs = {"test_data": os.path.join(results["data"].output_dir, "test.npz")}
    for model in models:
        inputs[f"model_file_{model}"] = os.path.join(export_path(cfg, model), "model.keras")
        inputs[f"perturbations_{model}"] = os.path.join(results[f"comparison-{model}"].output_dir, "perturbations")
    # Every model must have built its perturbations from this m: the largest
    # sample size they share up to `transfer.sample_size`.
    shared = set.intersection(*(set(cfg.for_model(model).comparison.sample_sizes) for model in models))
    if not shared:
        raise UserError("transfer needs a comparison sample size shared by every model; got "
                        + ", ".join(f"{model}: {cfg.for_model(model).comparison.sample_sizes}" for model in models))
    m = max([s for s in shared if s <= cfg.transfer.sample_size] or [min(shared)])
    return run_stage(
        TRANSFER_STAGE,
        os.path.join(cfg.run_dir, "transfer"),
        inputs=inputs,
        params={"models": list(models), "methods": cfg.transfer.methods, "m": m, "norm": cfg.transfer.norm,
                "eval_subsets": {model: cfg.for_model(model).universal.eval_subset for model in models},
                "seed": cfg.seed},
        settings={**settings_of(cfg.transfer), "strategy": make_strategy(cfg.strategy), "progress": cfg.progress},
        force=cfg.force,
        log=log,
    )


def report(cfg, models, results, log=None):
    """Builds the report from the analysis and universal results of `models`
    (of each training seed: `model_tag` names their inputs), then publishes
    `<run-dir>/metrics.json` and `<run-dir>/perturbations/` (the run seed's)."""
    inputs = {"test_data": os.path.join(results["data"].output_dir, "test.npz")}
    for model in models:
        inputs[f"top_vectors_{model}"] = os.path.join(results[f"analysis-{model}"].output_dir, "top_vectors.npz")
        for training_seed in cfg.model_seeds:
            tag = _seed_and_tag(cfg, model, training_seed)[1]
            inputs[f"analysis_{tag}"] = os.path.join(results[f"analysis-{tag}"].output_dir, "analysis.json")
            inputs[f"universal_{tag}"] = os.path.join(results[f"universal-{tag}"].output_dir, "universal.json")
            inputs[f"train_metrics_{tag}"] = os.path.join(results[f"train-{tag}"].output_dir, "metrics.json")
            if f"comparison-{tag}" in results:
                inputs[f"comparison_{tag}"] = os.path.join(results[f"comparison-{tag}"].output_dir,
                                                           "comparison.json")
    if "transfer" in results:
        inputs["transfer"] = os.path.join(results["transfer"].output_dir, "transfer.json")
    result = run_stage(
        REPORT_STAGE,
        os.path.join(cfg.run_dir, "report"),
        inputs=inputs,
        params={"models": list(models), "training_seeds": list(cfg.model_seeds)},
        settings={"timings": recorded_timings(results), "tensorboard_dir": os.path.join(cfg.run_dir, "tensorboard")},
        force=cfg.force,
        log=log,
    )
    publish_run_outputs(cfg.run_dir, os.path.join(result.output_dir, "metrics.json"),
                        [os.path.join(results[f"universal-{model}"].output_dir, "perturbations") for model in models])
    return result


def check_models(models):
    """Raises a UserError naming the first unknown model (or an empty choice)."""
    if not models:
        raise UserError(f"no model chosen; choose from: {', '.join(MODELS)}")
    for model in models:
        if model not in MODELS:
            raise UserError(f"unknown model {model!r}; choose from: {', '.join(MODELS)}")


# The stages in run-all's order, and what each needs run (or reused) first.
STAGES = ("data", "train", "directions", "analyse", "universal", "compare", "transfer", "report")
_NEEDS = {"data": (), "train": ("data",), "directions": ("data",), "analyse": ("directions",),
          "universal": ("directions",), "compare": ("universal",), "transfer": ("compare",),
          "report": ("train", "analyse", "universal", "compare", "transfer")}


def stages_for(until=None):
    """The stages `run_all(until=until)` runs: all of them for None, else
    `until` and, transitively, the stages it needs. Only "train" and
    "report" train models; the others need the exports to exist."""
    if until is None:
        return set(STAGES)
    if until not in _NEEDS:
        raise UserError(f"unknown stage {until!r}; choose one of: {', '.join(STAGES)}")
    needed, todo = set(), [until]
    while todo:
        stage = todo.pop()
        if stage not in needed:
            needed.add(stage)
            todo.extend(_NEEDS[stage])
    return needed


def _model_stages(cfg, models, attacks, wanted, at, data, log, training_seed):
    """The `wanted` stages of each model trained with `training_seed`:
    {stage name: StageResult}, named by `model_tag`. `at(stage)` is the
    configuration a stage runs with (force only for the stage asked for)."""
    results, seed = {}, training_seed  # short, for the calls below
    if "train" in wanted:
        for model in models:
            tag = _seed_and_tag(cfg, model, seed)[1]
            results[f"train-{tag}"] = train(at("train"), model, log, data=data, training_seed=seed)
    if "directions" not in wanted:
        return results
    for model in models:
        tag = _seed_and_tag(cfg, model, seed)[1]
        directions = {attack: collect_directions(at("directions"), model, attack, log, data=data, training_seed=seed)
                      for attack in attacks}
        results.update({f"directions-{tag}-{a}": r for a, r in directions.items()})
        if directions and "analyse" in wanted:
            results[f"analysis-{tag}"] = analyse(at("analyse"), model, directions, data, log, training_seed=seed)
        if directions and "universal" in wanted:
            results[f"universal-{tag}"] = evaluate_universal(at("universal"), model, directions, data, log,
                                                             training_seed=seed)
        if cfg.comparison_enabled and attacks and "compare" in wanted:
            results[f"comparison-{tag}"] = compare_methods(at("compare"), model, data, log,
                                                           results.get(f"universal-{tag}"), training_seed=seed)
    return results


def run_all(cfg, models=tuple(MODELS), attacks=ATTACK_NAMES, log=None, until=None):
    """Every stage of the study in order; returns {stage name: StageResult}.
    The model stages (train to comparison) run once per training seed
    (`cfg.model_seeds`, names from `model_tag`); the transfer and the
    published perturbations are the run seed's models'.

    With `until` (one of `STAGES`), only that stage and the stages it needs
    (`stages_for`), which are reused from the cache where valid: `cfg.force`
    then redoes `until` alone, so a user can rerun one stage.
    """
    check_models(models)
    wanted = stages_for(until)
    # Before any model is traced: TF picks its deterministic code paths at trace time. On a GPU, say at
    # once (one line) if a model would run an op that raises there under determinism, not hours in.
    use_deterministic_kernels()
    warn_nondeterministic_gpu_ops({name: MODELS[name] for name in models})

    def at(stage):
        return cfg if until in (None, stage) else dataclasses.replace(cfg, force=False)

    results = {"data": prepare_data(at("data"), log)}
    for training_seed in cfg.model_seeds:
        results.update(_model_stages(cfg, models, attacks, wanted, at, results["data"], log, training_seed))
    if "directions" not in wanted:
        return results
    if cfg.comparison_enabled and attacks and "transfer" in wanted:
        results["transfer"] = transfer(at("transfer"), models, results, log)
    if attacks and "report" in wanted:
        results["report"] = report(at("report"), models, results, log)
    return results
