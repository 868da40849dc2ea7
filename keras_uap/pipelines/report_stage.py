"""Report stage: every figure and table of the paper, `metrics.json` and
TensorBoard summaries, from the analysis and universal artifacts of each model.

Inputs are named per model: `analysis_<model>` (analysis.json),
`top_vectors_<model>`, `universal_<model>` (universal.json),
`train_metrics_<model>` (the export's metrics.json), optionally
`comparison_<model>` (comparison.json), plus `test_data` and optionally
`transfer` (transfer.json). With several `training_seeds` (the run's seed
first), each further seed's models come as `analysis_<model>-seed<s>`,
`universal_...`, `train_metrics_...` and `comparison_...` (`model_tag`):
their numbers make the report's `seeds` section, the run seed's the rest.
"""

import os

import numpy as np

from keras_uap.pipelines.code_versions import code_version
from keras_uap.pipelines.paths import model_tag
from keras_uap.pipelines.runner import Stage, read_json
from keras_uap.report import build_report, measured_metrics

__all__ = ["REPORT_STAGE"]


def _seed_artifacts(models, inputs, training_seed=None):
    """(analysis, universal, models_info, comparison), each {model: ...}, of
    the models trained with `training_seed` (None: the run's seed)."""
    analysis, universal, models_info, comparison = {}, {}, {}, {}
    for model in models:
        tag = model_tag(model, training_seed)
        analysis[model] = read_json(inputs[f"analysis_{tag}"])
        universal[model] = read_json(inputs[f"universal_{tag}"])
        train_metrics = read_json(inputs[f"train_metrics_{tag}"])
        models_info[model] = {
            "test_accuracy": train_metrics["test_accuracy"],
            "export_path": os.path.join(os.path.dirname(inputs[f"train_metrics_{tag}"]), "model.keras"),
            "history": train_metrics["history"],
        }
        if f"comparison_{tag}" in inputs:
            comparison[model] = read_json(inputs[f"comparison_{tag}"])
    return analysis, universal, models_info, comparison or None


def _report_stage(output_dir, test_data, models, training_seeds, timings=None, tensorboard_dir=None, **inputs):
    analysis, universal, models_info, comparison = _seed_artifacts(models, inputs)
    top_vectors = {}
    for model in models:
        with np.load(inputs[f"top_vectors_{model}"], allow_pickle=False) as f:
            top_vectors[model] = {k: f[k] for k in f.files}
    transfer = read_json(inputs["transfer"]) if "transfer" in inputs else None
    with np.load(test_data, allow_pickle=False) as f:
        n_test = int(len(f["y"]))
    data_info = {"test_path": test_data, "n_test": n_test}
    other_seeds = {}
    for seed in training_seeds[1:]:
        seed_analysis, seed_universal, seed_info, seed_comparison = _seed_artifacts(models, inputs, seed)
        other_seeds[seed] = measured_metrics(seed_analysis, {}, seed_universal, seed_info, data_info, {},
                                             comparison=seed_comparison)
    metrics = build_report(output_dir, analysis, top_vectors, universal, models_info, data_info, timings or {},
                           tensorboard_dir or os.path.join(output_dir, "tensorboard"),
                           comparison=comparison, transfer=transfer,
                           training_seed=training_seeds[0], other_seeds=other_seeds or None)
    claims = metrics["claims"]
    return {"claims_counted": len(claims["counted"]), "claims_holding": claims["counts"]["holds"]}


REPORT_STAGE = Stage(
    name="report",
    fn=_report_stage,
    version=code_version("1", __name__),
    inputs=("test_data", "analysis_*", "top_vectors_*", "universal_*", "train_metrics_*", "comparison_*",
            "transfer"),
    params=("models", "training_seeds"),
    settings=("timings", "tensorboard_dir"),
)
