"""The sweep's report stage: `sweep.md`, `metrics.json` ({"sweep": ...,
"sweep_reading": ...}) and `figures/` (`keras_uap.report.sweep_report`) from
the universal and measures artifacts of every (model, training range, test
set) cell, named by `cell_name`.
"""


from keras_uap.pipelines.code_versions import code_version
from keras_uap.pipelines.runner import Stage, read_json
from keras_uap.pipelines.sweep_stages import cell_name
from keras_uap.report.sweep_report import write_sweep_report

__all__ = ["SWEEP_REPORT_STAGE"]


def _sweep_report_stage(output_dir, models, ranges, test_sets, norm, **inputs):
    cells = {}
    for model in models:
        for rotation in ranges:
            for test_set in test_sets:
                name = cell_name(model, rotation, test_set)
                cells[model, rotation, test_set] = (read_json(inputs[f"universal_{name}"]),
                                                    read_json(inputs[f"measures_{name}"]))
    metrics = write_sweep_report(output_dir, models, ranges, cells, norm)
    return {model: metrics["sweep_reading"][model]["verdict"] for model in models}


SWEEP_REPORT_STAGE = Stage(
    name="sweep_report",
    fn=_sweep_report_stage,
    version=code_version("1", __name__),
    inputs=("universal_*", "measures_*"),
    params=("models", "ranges", "test_sets", "norm"),
)
