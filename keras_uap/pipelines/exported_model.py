"""Loading a model the train stage exported. A module of its own so that the
stages that only read an export (directions, curves, comparison, transfer)
do not depend on the training code: an edit to training then reruns
training, not every attack and curve after it."""

import os

__all__ = ["load_exported_model"]


def load_exported_model(export_dir):
    """Loads the `.keras` file of an export made by the train stage."""
    import keras

    import keras_uap.layers  # noqa: F401  (registers the custom layers)
    from keras_uap.errors import UserError

    path = os.path.join(export_dir, "model.keras")
    if not os.path.isfile(path):
        raise UserError(f"{path}: no exported model; create it with `keras-uap train`")
    return keras.saving.load_model(path)
