"""Class-mean difference directions, a model-agnostic universal perturbation.

Tramer, Papernot, Goodfellow, Boneh and McDaniel, 2017, "The Space of
Transferable Adversarial Examples", https://arxiv.org/abs/1704.03453,
Section 5: moving an input along the difference of class means (from its
class towards the others) fools models that never saw the direction.
"""

import math
import numbers

import numpy as np
import tensorflow as tf

from keras_uap.attacks.loss_gradient import as_float_input, as_int_labels

__all__ = ["class_mean_directions", "best_class_mean_direction"]


def class_mean_directions(x, y, num_classes=None, allow_missing=False):
    """For each class `c`, the unit vector from `mu_c` towards the others.

    With `mu_c` the mean of the inputs of class `c`, row `c` is
    `m_c - mu_c` scaled to unit L2 norm, where `m_c` is the unweighted mean of
    the other classes' means (so class frequencies in the sample do not
    matter). With two classes, row 0 is `(mu_1 - mu_0) / ||mu_1 - mu_0||`
    and row 1 its opposite.

    Args:
        x: the inputs, shape (N, ...).
        y: their labels, ints of shape (N,) (one-hot (N, C) is accepted).
        num_classes: the number of classes; defaults to `max(y) + 1`.
        allow_missing: a class with no input in the sample gets a zero row
            and is left out of the other classes' `m_c` (a small sample may
            miss a class) instead of raising; at least two classes must be
            present.

    Returns:
        A float32 array (num_classes, d) of unit rows, `d` the size of one
        input; a row whose class mean equals `m_c` is all zeros.

    Raises:
        ValueError: if `x` or `y` are malformed, fewer than two classes are
            asked for, or a class has no input in the sample (unless
            `allow_missing`).
    """
    x = as_float_input(x)
    y = as_int_labels(y, x.shape[0]).numpy()
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2. Received: num_classes={num_classes!r}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"`y` must hold labels in [0, {num_classes}). Received: labels in [{y.min()}, {y.max()}]")
    counts = np.bincount(y, minlength=num_classes)
    present = counts > 0
    if not allow_missing and not present.all():
        raise ValueError(f"Every class needs at least one input. Received: no input of class(es) "
                         f"{np.flatnonzero(~present).tolist()}")
    if present.sum() < 2:
        raise ValueError(f"At least two classes need inputs. Received: inputs of class(es) "
                         f"{np.flatnonzero(present).tolist()} only")
    flat = x.numpy().reshape(len(y), -1).astype(np.float64)
    means = np.stack([flat[y == c].mean(axis=0) if present[c] else np.zeros(flat.shape[1])
                      for c in range(num_classes)])
    others = (means.sum(axis=0, keepdims=True) - means) / (present.sum() - 1)
    directions = np.where(present[:, None], others - means, 0.0)
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    return (directions / np.maximum(norms, 1e-12)).astype(np.float32)


def best_class_mean_direction(model_fn, x, y, probe_norm, clip_min=0.0, clip_max=1.0, batch_size=1000,
                              return_details=False):
    """The class-mean direction, and sign, that fools the model most on a sample.

    Each of the `2 * num_classes` candidates `s * u_c` (`u_c` a row of
    `class_mean_directions(x, y)`, `s` = +1 or -1) is added to every input
    at L2 norm `probe_norm`; the one with the highest error rate against `y`
    on clip(x + probe_norm * s * u_c) wins, ties going to the higher mean
    cross-entropy loss.

    Args:
        model_fn: a callable that takes a batch of inputs and returns logits.
        x: the sample, shape (N, ...), inside [clip_min, clip_max].
        y: its true labels, ints (N,) (one-hot accepted).
        probe_norm: the L2 norm at which the candidates are compared, > 0.
        clip_min, clip_max: the input range, or both None for no clipping.
        batch_size: the batch of the forward passes.
        return_details: also return the winner's class and sign and the
            error rates and mean losses of all candidates.

    Returns:
        The winning unit vector, float32 of one input's shape. With
        `return_details`, the tuple `(direction, details)`, `details` a dict
        with "class", "sign", "error_rate" (num_classes, 2) and "loss"
        (num_classes, 2), column 0 for sign +1 and column 1 for sign -1.

    Raises:
        ValueError: for a non-positive or non-finite `probe_norm`, and as
            `class_mean_directions`.
    """
    if (isinstance(probe_norm, bool) or not isinstance(probe_norm, numbers.Real)
            or not math.isfinite(probe_norm) or probe_norm <= 0):
        raise ValueError(f"`probe_norm` must be a finite number > 0. Received: probe_norm={probe_norm!r}")
    x = as_float_input(x).numpy().astype(np.float32)
    labels = as_int_labels(y, x.shape[0]).numpy()
    directions = class_mean_directions(x, labels, allow_missing=True)
    lo, hi = (-np.inf, np.inf) if clip_min is None else (clip_min, clip_max)
    errors = np.zeros((len(directions), 2))
    losses = np.zeros((len(directions), 2))
    for c, u in enumerate(directions):
        if not np.any(u):  # a class absent from the sample: no direction to try
            errors[c], losses[c] = -np.inf, -np.inf
            continue
        for k, sign in enumerate((1.0, -1.0)):
            step = (sign * probe_norm * u).reshape(x.shape[1:])
            errors[c, k], losses[c, k] = _error_and_loss(model_fn, np.clip(x + step, lo, hi), labels, batch_size)
    # lexsort sorts by its last key first: error rate, then loss.
    best = int(np.lexsort((losses.ravel(), errors.ravel()))[-1])
    c, k = divmod(best, 2)
    direction = ((1.0, -1.0)[k] * directions[c]).reshape(x.shape[1:]).astype(np.float32)
    if return_details:
        return direction, {"class": c, "sign": (1, -1)[k], "error_rate": errors, "loss": losses}
    return direction


def _error_and_loss(model_fn, x, y, batch_size):
    wrong, loss = 0, 0.0
    for s in range(0, len(x), batch_size):
        logits = model_fn(tf.constant(x[s:s + batch_size]))
        wrong += int(np.sum(np.argmax(logits.numpy(), axis=1) != y[s:s + batch_size]))
        loss += float(tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y[s:s + batch_size], logits=logits)))
    return wrong / len(x), loss / len(x)
