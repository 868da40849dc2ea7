"""The study's report: `report.md` with figures and tables beside the paper's
numbers, `metrics.json`, and TensorBoard summaries.

`build_report` is the entry point; `missing_metric_keys` checks a metrics dict
against the keys later stages and tests rely on.
"""

from keras_uap.report.build import (REQUIRED_METRIC_KEYS, build_metrics, build_report, measured_metrics,
                                    missing_metric_keys)
from keras_uap.report.claims import evaluate_claims, reading_markdown

__all__ = ["REQUIRED_METRIC_KEYS", "build_metrics", "build_report", "evaluate_claims", "measured_metrics",
           "missing_metric_keys", "reading_markdown"]
