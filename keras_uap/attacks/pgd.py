"""PGD perturbations, computed by CleverHans' projected gradient descent."""

import math
import numbers

import numpy as np
import tensorflow as tf
from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

from keras_uap.attacks.loss_gradient import as_float_input, as_int_labels

__all__ = ["pgd_direction"]


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0. Received: {name}={value!r}")


def pgd_direction(model_fn, x, y, eps=0.3, eps_iter=0.01, nb_iter=40, norm=np.inf, clip_min=0.0, clip_max=1.0,
                  rand_init=False, seed=0):
    """The PGD perturbation `x_adv - x` of each input.

    Madry, Makelov, Schmidt, Tsipras and Vladu, 2018, "Towards Deep Learning
    Models Resistant to Adversarial Attacks", https://arxiv.org/abs/1706.06083.
    `x_adv` comes from CleverHans' `projected_gradient_descent`: `nb_iter`
    steps of the fast gradient method of size `eps_iter` on the softmax
    cross-entropy, each followed by projection onto the `norm` ball of radius
    `eps` around `x` and clipping to [clip_min, clip_max]. The defaults are
    Madry et al.'s MNIST settings (eps 0.3, step 0.01, 40 steps, L-infinity)
    except for the random start, off by default so that the result is a
    deterministic function of the model and `x`.

    Args:
        model_fn: a callable that takes a batch of inputs and returns logits
            of shape (N, num_classes).
        x: a batch of inputs, shape (N, ...), inside [clip_min, clip_max].
        y: the true labels, ints (N,) (one-hot accepted), or None to attack
            the model's own predictions (CleverHans' default, which avoids
            label leaking).
        eps: the radius of the norm ball, > 0.
        eps_iter: the size of each step, in (0, eps].
        nb_iter: the number of steps, an int >= 0.
        norm: np.inf or 2.
        clip_min, clip_max: the input range, or both None for no clipping.
        rand_init: start from a uniformly random point of the `eps` ball.
        seed: with `rand_init`, the random start is drawn after
            `tf.random.set_seed(seed)`, which resets TensorFlow's global
            seed (CleverHans draws it without a seed argument).

    Returns:
        A float32 tensor of `x`'s shape, `x_adv - x`, with `||.||_norm <= eps`
        per input up to float32 rounding and `x + result` inside the clip range.

    Raises:
        ValueError: for bad `eps`, `eps_iter`, `nb_iter`, `norm`, clip range,
            `x` or `y`.
    """
    _positive("eps", eps)
    _positive("eps_iter", eps_iter)
    if eps_iter > eps:
        raise ValueError(f"`eps_iter` must not exceed `eps`. Received: eps_iter={eps_iter!r}, eps={eps!r}")
    if isinstance(nb_iter, bool) or not isinstance(nb_iter, numbers.Integral) or nb_iter < 0:
        raise ValueError(f"`nb_iter` must be an int >= 0. Received: nb_iter={nb_iter!r}")
    if isinstance(norm, bool) or norm not in (np.inf, 2):
        raise ValueError(f"`norm` must be np.inf or 2. Received: norm={norm!r}")
    if (clip_min is None) != (clip_max is None):
        raise ValueError(f"`clip_min` and `clip_max` must both be numbers or both be None. "
                         f"Received: clip_min={clip_min!r}, clip_max={clip_max!r}")
    if clip_min is not None and not clip_min < clip_max:
        raise ValueError(f"`clip_min` must be below `clip_max`. Received: clip_min={clip_min!r}, clip_max={clip_max!r}")
    x = tf.cast(as_float_input(x), tf.float32)
    if y is not None:
        # CleverHans' loss wants int labels: one-hot rows would be misread.
        y = as_int_labels(y, x.shape[0])
    if rand_init:
        tf.random.set_seed(seed)
    x_adv = projected_gradient_descent(model_fn, x, eps, eps_iter, int(nb_iter), norm, clip_min=clip_min,
                                       clip_max=clip_max, y=y, rand_init=bool(rand_init))
    return x_adv - x
