"""Loading the model a stage attacks or measures. A module of its own so that
the stages that only read a model (directions, curves, comparison, transfer)
do not depend on the training code: an edit to training then reruns
training, not every attack and curve after it.

The stages read any classifier `keras_uap.api.load_classifier` reads: the
train stage's export in `run-all`, the user's `.keras` file or SavedModel
directory in `study`.
"""

import os

__all__ = ["load_exported_model", "load_logits_fn"]


def load_logits_fn(model_file):
    """The float32 logits function, (N, *input_shape) -> (N, classes), of the
    classifier at `model_file` (a `.keras` file or a SavedModel directory):
    `keras_uap.api.load_classifier`'s, which turns a model that outputs
    probabilities into log-probabilities (same arg-max, same gradients of
    the cross-entropy). A model that cannot be loaded is a UserError."""
    from keras_uap.api.classifier import load_classifier

    return load_classifier(model_file).logits_fn


def load_exported_model(export_dir):
    """Loads the `.keras` file of an export made by the train stage."""
    import keras

    import keras_uap.layers  # noqa: F401  (registers the custom layers)
    from keras_uap.errors import UserError

    path = os.path.join(export_dir, "model.keras")
    if not os.path.isfile(path):
        raise UserError(f"{path}: no exported model; create it with `keras-uap train`")
    return keras.saving.load_model(path)
