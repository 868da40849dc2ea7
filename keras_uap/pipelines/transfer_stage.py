"""Transfer stage: each model's universal perturbations applied to every model.

For every source model, method and the sample size `m`, the unit L2
direction saved by the source's comparison stage is scaled to L2 norm
`norm` and added to the test inputs of every target model (all of them, or
the target's seeded `eval_subsets[target]`); the error and fooling rates
form a source x target table per method. The diagonal is the comparison
stage's own number at that norm.

Inputs are named per model: `model_file_<model>` (the export's .keras file)
and `perturbations_<model>` (the comparison stage's `perturbations/`
folder), plus `test_data`. Artifact: `transfer.json`.
"""

import json
import os

import numpy as np

from keras_uap.method import fooling_curves
from keras_uap.pipelines.data_stage import value_range
from keras_uap.pipelines.evaluation import load_evaluation_set
from keras_uap.pipelines.code_versions import code_version
from keras_uap.pipelines.runner import Stage

__all__ = ["TRANSFER_STAGE", "TRANSFER_METHODS"]

TRANSFER_METHODS = ("svd_gradient", "svd_deepfool", "iterative_uap", "class_mean", "random")


def _transfer_stage(output_dir, test_data, models, methods, m, norm, eval_subsets, seed, batch_size=5000,
                    strategy=None, progress=None, **inputs):
    with np.load(test_data, allow_pickle=False) as f:
        x, y = f["x"], f["y"].astype(np.int32)
        clip = dict(zip(("clip_min", "clip_max"), value_range(f)))
    directions = {method: np.stack([np.load(os.path.join(inputs[f"perturbations_{source}"], f"{method}-m{m}.npy"))
                                    .reshape(-1) for source in models]) for method in methods}
    table = {method: {source: {} for source in models} for method in methods}
    clean_error = {}
    for step, target in enumerate(models):
        evaluation = load_evaluation_set(inputs[f"model_file_{target}"], x, y, eval_subsets.get(target), seed,
                                         batch_size, strategy)
        clean_error[target] = evaluation.clean_error_rate
        for method in methods:
            curves = fooling_curves(evaluation.predict_fn, evaluation.x, evaluation.y, directions[method], (norm,),
                                    clean=evaluation.clean, batch_size=batch_size, **clip)
            for column, source in enumerate(models):
                table[method][source][target] = {"error_rate": float(curves.error_rate[0, column]),
                                                 "fooling_rate": float(curves.fooling_rate[0, column]),
                                                 "n_eval": int(len(evaluation.x))}
        if progress:
            progress(step + 1, len(models))
    result = {"models": list(models), "methods": list(methods), "m": m, "norm": norm,
              "clean_error_rate": clean_error, "table": table}
    with open(os.path.join(output_dir, "transfer.json"), "w") as f:
        json.dump(result, f)
    return {method: {s: {t: r["error_rate"] for t, r in row.items()} for s, row in by_source.items()}
            for method, by_source in table.items()}


TRANSFER_STAGE = Stage(
    name="transfer",
    fn=_transfer_stage,
    version=code_version("1", __name__),
    inputs=("test_data", "model_file_*", "perturbations_*"),
    params=("models", "methods", "m", "norm", "eval_subsets", "seed"),
    settings=("batch_size", "strategy", "progress"),
)
