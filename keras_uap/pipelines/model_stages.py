"""The stages of one model's study, whoever's model it is: attack directions,
analysis, universal curves and the comparison of methods.

`run-all` (`keras_uap.pipelines.study`) calls them on each paper model it
trained, `study` (`keras_uap.pipelines.user_study`) on the user's model,
`sweep` (`keras_uap.pipelines.sweep`) on each model of each range and test set;
each is `run_stage` of one stage with its parameter dataclass
(`keras_uap.pipelines.stage_params`), so both commands compute, cache and
lay out their results in one way: `<run_dir>/directions/<tag>-<attack>`,
`analysis/<tag>`, `universal/<tag>` and `comparison/<tag>`, where `tag`
names the model's outputs (`model_tag`) and `model` is the name a stage
records (and prefixes the universal stage's perturbation files with).

The model file is anything `keras_uap.api.load_classifier` reads; the test
data an `.npz` with `x`, `y`, `clip_min` and `clip_max`.
"""

import dataclasses
import os

from keras_uap.api.distribute import make_strategy
from keras_uap.pipelines.analysis_stage import ANALYSIS_STAGE
from keras_uap.pipelines.comparison_stage import COMPARISON_STAGE
from keras_uap.pipelines.directions_stage import DIRECTIONS_STAGE
from keras_uap.pipelines.runner import run_stage
from keras_uap.pipelines.stage_params import cache_params, settings_of
from keras_uap.pipelines.universal_stage import UNIVERSAL_STAGE

__all__ = ["ModelRun", "directions_inputs", "collect_directions", "analyse", "evaluate_universal", "compare_methods"]


@dataclasses.dataclass(frozen=True)
class ModelRun:
    """What every stage of one model's study shares.

    Attributes:
        run_dir: the stages' outputs go below it.
        seed: the run's seed, part of every stage's cache key.
        tag: names the model's outputs (`model_tag`).
        model: the name the stages record.
        model_file: the classifier (`.keras` file or SavedModel directory).
        test_data: the `.npz` of the attacked and evaluated inputs.
        strategy: "none" or "mirrored" (outside the cache keys).
        progress: `progress(done, total)` for long loops, or None.
        force: rerun the stages even when cached.
        log: optional callable taking one line of progress text.
    """

    run_dir: str
    seed: int
    tag: str
    model: str
    model_file: str
    test_data: str
    strategy: str = "none"
    progress: object = None
    force: bool = False
    log: object = None

    def _run(self, stage, folder, inputs, params, settings=None):
        return run_stage(stage, os.path.join(self.run_dir, folder), inputs=inputs, params=params,
                         settings=settings, force=self.force, log=self.log)

    def _runtime(self):
        return {"strategy": make_strategy(self.strategy), "progress": self.progress}


def directions_inputs(directions):
    """The stage inputs {"directions_<attack>": directions.npz} of the directions results ({attack: StageResult})."""
    return {f"directions_{attack}": os.path.join(result.output_dir, "directions.npz")
            for attack, result in directions.items()}


def collect_directions(run, attack, params):
    """The `attack` directions of the model on the test inputs
    (`DirectionsParams` `params`)."""
    return run._run(DIRECTIONS_STAGE, os.path.join("directions", f"{run.tag}-{attack}"),
                    {"model": run.model_file, "test_data": run.test_data},
                    {"attack": attack, **cache_params(params), "seed": run.seed}, run._runtime())


def analyse(run, directions, params):
    """Spectra and theory checks (and, with `params.invariant_angle`, the
    invariant directions) from the directions results ({attack: StageResult})."""
    return run._run(ANALYSIS_STAGE, os.path.join("analysis", run.tag),
                    {"test_data": run.test_data, **directions_inputs(directions)},
                    {"model": run.model, **cache_params(params), "seed": run.seed})


def evaluate_universal(run, directions, params):
    """Universal-attack curves (`UniversalParams` `params`) from the directions results."""
    return run._run(UNIVERSAL_STAGE, os.path.join("universal", run.tag),
                    {"model_file": run.model_file, "test_data": run.test_data, **directions_inputs(directions)},
                    {"model": run.model, **cache_params(params), "seed": run.seed},
                    {**settings_of(params), **run._runtime()})


def compare_methods(run, params, universal_params, limit, universal=None):
    """SVD-UAP against the iterative UAP, class-mean and random directions
    (`ComparisonParams` `params`): the same samples of the first `limit`
    test inputs, their cost, L2 and L-infinity curves, on the universal
    stage's evaluation set, grid and saturation (`universal_params`). With
    the model's `universal` result, its SVD-UAPs are the vectors that stage
    published, their curves (and the random one) read from it."""
    published = {"universal": universal.output_dir} if universal else {}
    return run._run(COMPARISON_STAGE, os.path.join("comparison", run.tag),
                    {"model_file": run.model_file, "test_data": run.test_data, **published},
                    {"model": run.model, **cache_params(params), "eps_grid": universal_params.eps_grid,
                     "saturation": universal_params.saturation, "eval_subset": universal_params.eval_subset,
                     "limit": limit, "seed": run.seed},
                    {**settings_of(params), **run._runtime()})
