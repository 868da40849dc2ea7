"""Report stage: every figure and table of the paper, `metrics.json` and
TensorBoard summaries, from the analysis and universal artifacts of each model.

Inputs are named per model: `analysis_<model>` (analysis.json),
`top_vectors_<model>`, `universal_<model>` (universal.json),
`train_metrics_<model>` (the export's metrics.json), optionally
`comparison_<model>` (comparison.json), plus `test_data` and optionally
`transfer` (transfer.json).
"""

import json
import os

import numpy as np

from keras_uap.pipelines.code_versions import code_version
from keras_uap.pipelines.runner import Stage
from keras_uap.report import build_report

__all__ = ["REPORT_STAGE"]


def _load_json(path):
    with open(path) as f:
        return json.load(f)


def _report_stage(output_dir, test_data, models, timings=None, tensorboard_dir=None, **inputs):
    analysis, top_vectors, universal, models_info = {}, {}, {}, {}
    for model in models:
        analysis[model] = _load_json(inputs[f"analysis_{model}"])
        with np.load(inputs[f"top_vectors_{model}"], allow_pickle=False) as f:
            top_vectors[model] = {k: f[k] for k in f.files}
        universal[model] = _load_json(inputs[f"universal_{model}"])
        train_metrics = _load_json(inputs[f"train_metrics_{model}"])
        models_info[model] = {
            "test_accuracy": train_metrics["test_accuracy"],
            "export_path": os.path.join(os.path.dirname(inputs[f"train_metrics_{model}"]), "model.keras"),
            "history": train_metrics["history"],
        }
    comparison = {model: _load_json(inputs[f"comparison_{model}"]) for model in models
                  if f"comparison_{model}" in inputs}
    transfer = _load_json(inputs["transfer"]) if "transfer" in inputs else None
    with np.load(test_data, allow_pickle=False) as f:
        n_test = int(len(f["y"]))
    metrics = build_report(output_dir, analysis, top_vectors, universal, models_info,
                           {"test_path": test_data, "n_test": n_test}, timings or {},
                           tensorboard_dir or os.path.join(output_dir, "tensorboard"),
                           comparison=comparison or None, transfer=transfer)
    claims = metrics["claims"]
    return {"claims_counted": len(claims["counted"]), "claims_holding": claims["counts"]["holds"]}


REPORT_STAGE = Stage(
    name="report",
    fn=_report_stage,
    version=code_version("1", __name__),
    inputs=("test_data", "analysis_*", "top_vectors_*", "universal_*", "train_metrics_*", "comparison_*",
            "transfer"),
    params=("models",),
    settings=("timings", "tensorboard_dir"),
)
