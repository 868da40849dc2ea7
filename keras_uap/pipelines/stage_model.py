"""The model a stage attacks or measures, as a logits function.

The directions, universal, comparison and transfer stages read any
classifier `keras_uap.api.load_classifier` reads: the train stage's export
in `run-all`, the user's `.keras` file or SavedModel directory in `study`.
A module apart from `exported_model` (which the train stage uses), so that
a change here reruns the stages that read models, not training.
"""

__all__ = ["load_logits_fn"]


def load_logits_fn(model_file):
    """The float32 logits function, (N, *input_shape) -> (N, classes), of the
    classifier at `model_file` (a `.keras` file or a SavedModel directory):
    `keras_uap.api.load_classifier`'s, which turns a model that outputs
    probabilities into log-probabilities (same arg-max, same gradients of
    the cross-entropy). A model that cannot be loaded is a UserError."""
    from keras_uap.api.classifier import load_classifier

    return load_classifier(model_file).logits_fn
