"""Gradient of the cross-entropy loss with respect to the input."""

import numpy as np
import tensorflow as tf

__all__ = ["loss_gradient"]


def as_int_labels(y, batch_size):
    """`y` as an int64 tensor of shape (batch_size,); one-hot rows are argmaxed.

    Raises:
        ValueError: if `y` does not hold one label per example.
    """
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2:
        y = tf.argmax(y, axis=1)
    if y.shape.rank != 1 or y.shape[0] != batch_size:
        raise ValueError(
            f"`y` must hold one label per example, shape ({batch_size},). Received: shape={tuple(y.shape)}"
        )
    if y.dtype.is_floating:
        # Silently truncating 2.7 to 2 would attack the wrong class.
        if not bool(tf.reduce_all(tf.equal(y, tf.round(y)))):
            raise ValueError(f"`y` must hold integer class labels. Received: y={y.numpy()}")
    elif not y.dtype.is_integer:
        raise ValueError(f"`y` must hold integer class labels. Received: dtype={y.dtype.name}")
    return tf.cast(y, tf.int64)


def as_float_input(x):
    """`x` as a float tensor of rank >= 2: float64 stays float64 (for
    finite-difference checks), anything else becomes float32."""
    dtype = tf.float64 if getattr(x, "dtype", None) in (np.float64, tf.float64) else tf.float32
    x = tf.convert_to_tensor(x)
    x = tf.cast(x, dtype)
    if x.shape.rank is None or x.shape.rank < 2:
        raise ValueError(f"`x` must be a batch (N, ...) of rank >= 2. Received: shape={tuple(x.shape)}")
    return x


def loss_gradient(model_fn, x, y):
    """Per-example gradient of the softmax cross-entropy with respect to `x`.

    The direction that FGSM (Goodfellow et al., 2015, "Explaining and
    Harnessing Adversarial Examples", https://arxiv.org/abs/1412.6572) takes
    the sign of. The per-example losses are summed, not averaged, so row `i`
    of the result is the gradient of example `i`'s own loss, unscaled by the
    batch size (examples do not interact in an inference-mode forward pass).

    Args:
        model_fn: a callable that takes a batch of inputs and returns logits
            of shape (N, num_classes).
        x: a batch of inputs, shape (N, ...).
        y: the true labels, ints of shape (N,) (one-hot (N, C) is accepted).

    Returns:
        A tensor of `x`'s shape: float32, or float64 when `x` is float64.
        Pixels that the loss does not depend on get 0.

    Raises:
        ValueError: if `x` is not a batch, `y` does not hold one integer
            label per example, or `model_fn` does not return (N, C) logits.
    """
    x = as_float_input(x)
    y = as_int_labels(y, x.shape[0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model_fn(x)
        if logits.shape.rank != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(f"`model_fn` must return logits of shape (N, C). Received: shape={tuple(logits.shape)}")
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    return tape.gradient(loss, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
