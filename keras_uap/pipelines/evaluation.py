"""The evaluation set every curve-measuring stage shares: a loaded export,
the test inputs it is measured on, a compiled prediction function and the
clean predictions.

The universal, comparison and transfer stages list this module in their code
versions, so a change here invalidates their results.
"""

import dataclasses

import numpy as np

from keras_uap.api.distribute import BatchRunner
from keras_uap.method import draw_sample

__all__ = ["EvaluationSet", "load_evaluation_set"]


@dataclasses.dataclass(frozen=True)
class EvaluationSet:
    """A model and the test inputs its curves are measured on.

    Attributes:
        logits_fn: the model's logits, float32 batch -> (N, classes) float32
            (`StageModel.logits`, shared by the process's stages).
        x, y: the evaluated inputs and their int32 labels (all test inputs,
            or the seeded subset).
        predict_fn: NumPy batch -> int32 predicted labels
            (`StageModel.labels`, split over a strategy's replicas when
            there is one).
        clean: the clean predictions on `x`.
    """

    logits_fn: object
    x: np.ndarray
    y: np.ndarray
    predict_fn: object
    clean: np.ndarray

    @property
    def clean_error_rate(self):
        return float(np.mean(self.clean != self.y))


def load_evaluation_set(model_file, x, y, eval_subset, seed, batch_size, strategy=None):
    """Loads the model at `model_file` (`load_stage_model`) and predicts the evaluated inputs.

    `eval_subset` None evaluates all of `(x, y)`; an int, the seeded subset
    of that many (`draw_sample`, the same draw as the directions stage's subsets).
    With a `tf.distribute.Strategy`, every prediction is data-parallel over
    its replicas (`keras_uap.api.BatchRunner`): the same labels, row by row.
    """
    from keras_uap.pipelines.stage_model import load_stage_model

    model = load_stage_model(model_file)
    evaluated = draw_sample(len(x), len(x) if eval_subset is None else eval_subset, seed)
    x_eval, y_eval = x[evaluated], y[evaluated]
    predict_fn = model.labels
    if strategy is not None:
        predict_fn = BatchRunner(predict_fn, strategy)
    clean = np.concatenate([np.asarray(predict_fn(x_eval[i:i + batch_size]))
                            for i in range(0, len(x_eval), batch_size)])
    return EvaluationSet(model.logits, x_eval, y_eval, predict_fn, clean)
