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
import tensorflow as tf

from keras_uap.pipelines.directions_stage import attacked_indices
from keras_uap.pipelines.runner import Stage, code_version
from keras_uap.pipelines.universal_stage import compiled_predict_fn

__all__ = ["TRANSFER_STAGE", "TRANSFER_METHODS"]

TRANSFER_METHODS = ("svd_gradient", "svd_deepfool", "iterative_uap", "class_mean", "random")


def _rates(predict_fn, x, y, clean, perturbation, batch_size):
    predictions = np.concatenate([
        predict_fn(tf.constant(np.clip(x[i:i + batch_size] + perturbation, 0.0, 1.0))).numpy()
        for i in range(0, len(x), batch_size)])
    return float(np.mean(predictions != y)), float(np.mean(predictions != clean))


def _transfer_stage(output_dir, test_data, models, methods, m, norm, eval_subsets, seed, batch_size=5000,
                    progress=None, **inputs):
    from keras_uap.pipelines.train_stage import load_exported_model

    with np.load(test_data, allow_pickle=False) as f:
        x, y = f["x"], f["y"].astype(np.int32)
    directions = {source: {method: np.load(os.path.join(inputs[f"perturbations_{source}"], f"{method}-m{m}.npy"))
                           for method in methods} for source in models}
    table = {method: {source: {} for source in models} for method in methods}
    clean_error = {}
    for step, target in enumerate(models):
        network = load_exported_model(os.path.dirname(inputs[f"model_file_{target}"]))
        evaluated = attacked_indices(len(x), None, eval_subsets.get(target), seed)
        x_eval, y_eval = x[evaluated], y[evaluated]
        predict_fn = compiled_predict_fn(network, x_eval[:8])
        clean = np.concatenate([predict_fn(tf.constant(x_eval[i:i + batch_size])).numpy()
                                for i in range(0, len(x_eval), batch_size)])
        clean_error[target] = float(np.mean(clean != y_eval))
        for method in methods:
            for source in models:
                error, fooling = _rates(predict_fn, x_eval, y_eval, clean, norm * directions[source][method],
                                        batch_size)
                table[method][source][target] = {"error_rate": error, "fooling_rate": fooling,
                                                 "n_eval": int(len(x_eval))}
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
    settings=("batch_size", "progress"),
)
