"""TFX-style stages of the study and the runner that caches and publishes them."""

from keras_uap.pipelines.runner import Stage, StageResult, run_stage
from keras_uap.pipelines.study import StudyConfig, prepare_data, quick_config, run_all, train

__all__ = ["Stage", "StageResult", "run_stage", "StudyConfig", "prepare_data", "quick_config", "run_all",
           "train"]
