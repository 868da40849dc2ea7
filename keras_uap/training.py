"""Training with fresh random rotations every epoch, and export.

The optimiser settings default to the GCNN reference code's: SGD with
learning rate 0.01 and momentum 0.5, batch 64, 10 epochs. RotEqNet's
authors trained with Adam, which `optimizer="adam"` selects.
"""

import math
import os

import numpy as np
import tensorflow as tf

import keras
from keras_uap.data.rotation import MAX_ANGLE, rotate_images

__all__ = ["set_determinism", "rotated_training_dataset", "BestValidationWeights", "compile_for_training",
           "make_optimizer", "OPTIMIZERS", "fit_rotated", "train_model",
           "export_model", "evaluate_accuracy"]


def set_determinism(seed):
    """Seeds Python, NumPy, TensorFlow and Keras, and asks TF for deterministic
    kernels, so the same seed gives the same numbers on CPU."""
    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


def rotated_training_dataset(images, labels, batch_size, epochs, seed, max_angle=MAX_ANGLE):
    """A tf.data pipeline over `epochs` epochs: each epoch a new permutation and
    new angles uniform in [-max_angle, max_angle] degrees, drawn from
    (seed, epoch) so that the stream is reproducible.

    Args:
        images: uint8 (n, H, W) images (scaled by 1/255), or float (n, H, W, C)
            images already in [0, 1].

    Yields (x, y) with x (batch, H, W, C) float32 in [0, 1].
    """
    n = len(images)
    orders, angles = [], []
    for epoch in range(epochs):
        rng = np.random.default_rng([seed, 1000 + epoch])
        orders.append(rng.permutation(n))
        angles.append(rng.uniform(-max_angle, max_angle, size=n).astype(np.float32))
    divisor = 255.0 if images.dtype == np.uint8 else 1.0
    images = tf.constant(images[..., None] if images.ndim == 3 else images)
    labels = tf.constant(np.asarray(labels, dtype=np.int64))

    def one_epoch(order, angle):
        return tf.data.Dataset.from_tensor_slices((order, angle)).batch(batch_size)

    def load(order, angle):
        x = tf.cast(tf.gather(images, order), tf.float32) / divisor
        return tf.clip_by_value(rotate_images(x, angle), 0.0, 1.0), tf.gather(labels, order)

    epochs_ds = tf.data.Dataset.from_tensor_slices((np.stack(orders), np.stack(angles)))
    return (
        epochs_ds.flat_map(one_epoch)
        .map(load, num_parallel_calls=1, deterministic=True)
        .prefetch(2)
    )


class BestValidationWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the highest validation accuracy and
    restores them when training ends: the validation split exists to pick the
    model, and the last epoch of plain SGD is a noisy choice."""

    def __init__(self, monitor="val_accuracy"):
        super().__init__()
        self.monitor = monitor
        self.best_epoch = None
        self._best = -np.inf
        self._weights = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self._best:
            self._best, self.best_epoch = value, epoch
            self._weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self._weights is not None:
            self.model.set_weights(self._weights)


OPTIMIZERS = ("sgd", "adam")


def make_optimizer(optimizer="sgd", learning_rate=0.01, momentum=0.5):
    """SGD with momentum, or Adam (`momentum` unused)."""
    if optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
    if optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")


def compile_for_training(model, learning_rate=0.01, momentum=0.5, optimizer="sgd"):
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate, momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def fit_rotated(model, train, validation, epochs=10, batch_size=64, seed=0, max_angle=MAX_ANGLE,
                tensorboard_dir=None, verbose=1):
    """Fits the compiled `model` on `train` (images, labels), rotated afresh
    every epoch uniformly in [-max_angle, max_angle] degrees
    (`rotated_training_dataset`), validating on `validation` (x, y) after
    every epoch, or not at all when it is None.

    The weights of the epoch with the best validation accuracy are kept.

    Returns:
        the Keras `History.history` dict (per-epoch loss and accuracy), with
        `best_epoch` (1-based; None without validation) added.
    """
    images, labels = train
    dataset = rotated_training_dataset(images, labels, batch_size, epochs, seed, max_angle)
    best = BestValidationWeights()
    callbacks = [best]
    if tensorboard_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=tensorboard_dir, write_graph=False,
                                                     update_freq="epoch"))
    history = model.fit(
        dataset,
        epochs=epochs,
        steps_per_epoch=math.ceil(len(images) / batch_size),
        validation_data=validation,
        validation_batch_size=1000,
        callbacks=callbacks,
        shuffle=False,  # the dataset already draws a new order every epoch
        verbose=verbose,
    )
    record = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    record["best_epoch"] = None if best.best_epoch is None else best.best_epoch + 1
    return record


def train_model(model, train, validation, epochs=10, batch_size=64, learning_rate=0.01,
                momentum=0.5, seed=0, tensorboard_dir=None, verbose=1, optimizer="sgd", max_angle=MAX_ANGLE):
    """Compiles `model` (`compile_for_training`) and trains it on rotated
    `train` (uint8 images, labels) with `fit_rotated`; returns its history."""
    compile_for_training(model, learning_rate, momentum, optimizer)
    return fit_rotated(model, train, validation, epochs=epochs, batch_size=batch_size, seed=seed,
                       max_angle=max_angle, tensorboard_dir=tensorboard_dir, verbose=verbose)


def export_model(model, output_dir):
    """Writes `saved_model/` (TF SavedModel, serving signature float32
    [N, 28, 28, 1] -> logits) and `model.keras` into `output_dir`."""
    model.export(os.path.join(output_dir, "saved_model"), format="tf_saved_model", verbose=False)
    model.save(os.path.join(output_dir, "model.keras"))


def evaluate_accuracy(predict_logits, x, y, batch_size=1000):
    """Fraction of `x` whose arg-max logit equals `y`."""
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = np.asarray(predict_logits(x[start:start + batch_size]))
        correct += int((logits.argmax(axis=1) == y[start:start + batch_size]).sum())
    return correct / len(x)
