"""The model a stage attacks or measures, as compiled functions shared by
every stage of one process.

The directions, universal, comparison and transfer stages read any
classifier `keras_uap.api.load_classifier` reads: the train stage's export
in `run-all`, the user's `.keras` file or SavedModel directory in `study`.
A module apart from `exported_model` (which the train stage uses), so that
a change here reruns the stages that read models, not training.

Why shared: `run-all` runs a model's five direction stages, its universal
curves, its comparison and the transfer in one process. A new
`tf.function` per stage traces the model again, and every attack step
compiled per model function (DeepFool's, the gradient's backward pass)
with it: for RotEqNet in the quick profile, seconds per stage. One
`StageModel` per model file (same path, size and modification time, so a
retrained export is loaded afresh) lets each later stage reuse the traces
and the XLA kernels of the earlier ones. The functions are pure (inference
only, no state), so sharing them changes no number.
"""

import dataclasses
import os

__all__ = ["StageModel", "load_stage_model"]

# {real path: (its version, StageModel)}: one model per path, the newest version.
_LOADED = {}


@dataclasses.dataclass(frozen=True, eq=False)
class StageModel:
    """A loaded classifier's compiled functions.

    Attributes:
        logits: float32 batch (N, *input_shape) -> float32 logits (N,
            classes); a `tf.function` (reduce_retracing) of
            `keras_uap.api.load_classifier`'s logits function, which turns
            a model that outputs probabilities into log-probabilities (same
            arg-max, same gradients of the cross-entropy). Differentiable.
        labels: float32 batch -> int32 arg-max labels (N,), traced as a
            graph. Not XLA: on the CPU that benchmarks/bench_predict.py
            measured, XLA is slower for every model (test-size batches,
            fashion_mnist exports, medians of 6: StdCNN 0.27 s graph vs
            0.69 s XLA per 5,000 images, GCNN 1.51 vs 1.89, RotEqNet 1.62
            vs 3.72 per 1,000), and the curves are hundreds of such passes.
        classifier: the `keras_uap.api.Classifier` they call, kept alive
            with them (a SavedModel's signature function does not keep
            its variables alive).
    """

    logits: object
    labels: object
    classifier: object = dataclasses.field(repr=False)


def _version(path):
    """What tells two versions of a model file (or SavedModel directory) apart."""
    files = [path] if not os.path.isdir(path) else sorted(
        os.path.join(root, name) for root, _, names in os.walk(path) for name in names)
    stats = [(f, os.stat(f)) for f in files]
    return tuple((f, stat.st_size, stat.st_mtime_ns) for f, stat in stats)


def load_stage_model(model_file):
    """The `StageModel` of the classifier at `model_file` (a `.keras` file or a
    SavedModel directory), loaded once per process and file version; a new
    version at the same path replaces the old one, which is then freed. A
    model that cannot be loaded is a UserError."""
    import tensorflow as tf

    from keras_uap.api.classifier import load_classifier

    path = os.path.realpath(model_file)
    version = _version(path) if os.path.exists(path) else None  # None: load_classifier says what is missing
    loaded = _LOADED.get(path)
    if loaded is None or loaded[0] != version:  # a retrained export replaces the one it overwrote
        classifier = load_classifier(model_file)
        logits = tf.function(classifier.logits_fn, reduce_retracing=True)
        labels = tf.function(lambda t: tf.argmax(logits(t), axis=1, output_type=tf.int32), reduce_retracing=True)
        _LOADED[path] = loaded = (version, StageModel(logits, labels, classifier))
    return loaded[1]
