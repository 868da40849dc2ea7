"""The evaluation set every curve-measuring stage shares: a loaded export,
the test inputs it is measured on, a compiled prediction function and the
clean predictions.

The universal, comparison and transfer stages list this module in their code
versions, so a change here invalidates their results.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_uap.api.distribute import BatchRunner
from keras_uap.method import draw_sample

__all__ = ["EvaluationSet", "compiled_predict_fn", "load_evaluation_set"]


def compiled_predict_fn(network, probe):
    """An arg-max prediction function traced once as a graph (no XLA).

    Not XLA: on the CPU that benchmarks/bench_predict.py measured, XLA is slower
    for every model (test-size batches, fashion_mnist exports, medians of 6:
    StdCNN 0.27 s graph vs 0.69 s XLA per 5,000 images, GCNN 1.51 vs 1.89,
    RotEqNet 1.62 vs 3.72 per 1,000; see benchmarks/bench_predict.py), and
    the curves are hundreds of such passes. `probe` (a few inputs) traces it.
    """
    predict = tf.function(lambda t: tf.argmax(network(t, training=False), axis=1, output_type=tf.int32),
                          reduce_retracing=True)
    predict(tf.constant(probe))
    return predict


@dataclasses.dataclass(frozen=True)
class EvaluationSet:
    """A model and the test inputs its curves are measured on.

    Attributes:
        network: the model's logits, a function (x, training=False) ->
            (N, classes) float32 (`load_logits_fn`).
        x, y: the evaluated inputs and their int32 labels (all test inputs,
            or the seeded subset).
        predict_fn: NumPy batch -> int32 predicted labels
            (`compiled_predict_fn`, split over a strategy's replicas when
            there is one).
        clean: the clean predictions on `x`.
    """

    network: object
    x: np.ndarray
    y: np.ndarray
    predict_fn: object
    clean: np.ndarray

    @property
    def clean_error_rate(self):
        return float(np.mean(self.clean != self.y))


def load_evaluation_set(model_file, x, y, eval_subset, seed, batch_size, strategy=None):
    """Loads the model at `model_file` (`load_logits_fn`) and predicts the evaluated inputs.

    `eval_subset` None evaluates all of `(x, y)`; an int, the seeded subset
    of that many (`draw_sample`, the same draw as the directions stage's subsets).
    With a `tf.distribute.Strategy`, every prediction is data-parallel over
    its replicas (`keras_uap.api.BatchRunner`): the same labels, row by row.
    """
    from keras_uap.pipelines.stage_model import load_logits_fn

    logits_fn = load_logits_fn(model_file)

    def network(x, training=False):  # called as the Keras model it stands for; inference only
        return logits_fn(x)

    evaluated = draw_sample(len(x), len(x) if eval_subset is None else eval_subset, seed)
    x_eval, y_eval = x[evaluated], y[evaluated]
    predict_fn = compiled_predict_fn(network, x_eval[:8])
    if strategy is not None:
        predict_fn = BatchRunner(predict_fn, strategy)
    clean = np.concatenate([np.asarray(predict_fn(x_eval[i:i + batch_size]))
                            for i in range(0, len(x_eval), batch_size)])
    return EvaluationSet(network, x_eval, y_eval, predict_fn, clean)
