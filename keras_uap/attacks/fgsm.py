"""FGSM perturbations, computed by CleverHans' fast gradient method."""

import math
import numbers

import numpy as np
import tensorflow as tf
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

from keras_uap.attacks.loss_gradient import as_float_input, as_int_labels

__all__ = ["fgsm_direction"]


def fgsm_direction(model_fn, x, y, eps=0.3, clip_min=None, clip_max=None):
    """The FGSM perturbation `x_adv - x` of each input, at its true label.

    Goodfellow et al., 2015, "Explaining and Harnessing Adversarial Examples",
    https://arxiv.org/abs/1412.6572: `x_adv = x + eps * sign(grad_x L(x, y))`
    with `L` the softmax cross-entropy. `x_adv` comes from CleverHans'
    `fast_gradient_method` with `norm=np.inf` and the true labels `y` (not the
    model's predictions).

    Args:
        model_fn: a callable that takes a batch of inputs and returns logits
            of shape (N, num_classes).
        x: a batch of inputs, shape (N, ...).
        y: the true labels, ints of shape (N,) (one-hot (N, C) is accepted).
        eps: the L-infinity size of the step, >= 0.
        clip_min, clip_max: both None (no clipping): the result is exactly
            `eps * sign(gradient)` (0 where the gradient is 0). Both given:
            `x_adv` is clipped to [clip_min, clip_max], so the result may be
            smaller than `eps` where the step would leave that range.

    Returns:
        A float32 tensor of `x`'s shape.

    Raises:
        ValueError: for a negative or non-finite `eps`, only one of the
            clip bounds, or bad `x` or `y`.
    """
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"`eps` must be a finite number >= 0. Received: eps={eps!r}")
    clipped = clip_min is not None
    if clipped != (clip_max is not None):
        raise ValueError(f"`clip_min` and `clip_max` must be given together. Received: clip_min={clip_min!r}, "
                         f"clip_max={clip_max!r}")
    x = tf.cast(as_float_input(x), tf.float32)
    # CleverHans' default loss is sparse_softmax_cross_entropy_with_logits, so y
    # must be int labels: one-hot rows would be misread as a batch of labels.
    y = as_int_labels(y, x.shape[0])
    x_adv = fast_gradient_method(model_fn, x, eps, np.inf, y=y, clip_min=clip_min, clip_max=clip_max)
    if clipped:
        return x_adv - x
    # (x + eps * s) - x picks up float32 rounding; its sign is exactly s.
    return tf.cast(eps, tf.float32) * tf.sign(x_adv - x)
