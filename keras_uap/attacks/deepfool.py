"""DeepFool (L2), batched: finished inputs leave the batch, the step is compiled."""

import functools
import math
import numbers

import numpy as np
import tensorflow as tf

from keras_uap.attacks.loss_gradient import as_float_input

__all__ = ["deepfool"]

# Added to |f_k| so that each step crosses the linearised boundary instead of
# stopping on it (CleverHans v3 adds 1e-5 there; the authors' code and foolbox
# add 1e-4 to the distance |f_k| / ||w_k||, a difference of 1e-4 * (1 - 1 / ||w_k||)).
_LOGIT_EPS = 1e-4
# Keeps a zero gradient difference (a flat or constant model) from dividing by
# zero: its candidate gets a huge distance and a zero step instead of NaN.
_NORM_EPS = 1e-8
# Upper bound on the batch of one compiled step: memory grows with
# chunk * (nb_candidate - 1) gradients and throughput no longer improves.
_CHUNK = 128


def _check_args(nb_candidate, overshoot, max_iter, clip_min, clip_max):
    if isinstance(nb_candidate, bool) or not isinstance(nb_candidate, numbers.Integral) or nb_candidate < 2:
        raise ValueError(f"`nb_candidate` must be an int >= 2. Received: nb_candidate={nb_candidate!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"`max_iter` must be an int >= 1. Received: max_iter={max_iter!r}")
    if not isinstance(overshoot, numbers.Real) or not math.isfinite(overshoot) or overshoot < 0:
        raise ValueError(f"`overshoot` must be a finite number >= 0. Received: overshoot={overshoot!r}")
    if (clip_min is None) != (clip_max is None):
        raise ValueError(
            f"`clip_min` and `clip_max` must both be numbers or both be None. "
            f"Received: clip_min={clip_min!r}, clip_max={clip_max!r}"
        )
    if clip_min is not None and not (
        isinstance(clip_min, numbers.Real) and isinstance(clip_max, numbers.Real) and clip_min < clip_max
    ):
        raise ValueError(
            f"`clip_min` must be a number below `clip_max`. Received: clip_min={clip_min!r}, clip_max={clip_max!r}"
        )


# Both are traced once per model, candidate count and sample shape, with the
# batch size left open (get_concrete_function below): the active batch shrinks
# every iteration and must not retrace.
@tf.function
def _predict(model_fn, x):
    return model_fn(x)


@tf.function
def _step(model_fn, nb_candidate, overshoot, clip_min, clip_max, x_adv, x, r_tot, candidates):
    """One DeepFool iteration for a batch of unfinished inputs.

    Returns the new `x_adv`, the new `r_tot` and the model's labels at the new
    `x_adv`. Testing the new point here costs one extra forward pass; taking
    the labels from the next iteration's taped pass instead would spend a full
    set of candidate gradients on every input that has just finished.
    """
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x_adv)
        top = tf.gather(model_fn(x_adv), candidates, batch_dims=1)
        # One backward pass per candidate difference, all from this one forward
        # pass. A loop of tape.gradient took about 2/3 of the CPU time of
        # batch_jacobian (pfor) on the GCNN.
        diffs = tf.unstack(top[:, 1:] - top[:, :1], axis=1)
    w = tf.stack(
        [tape.gradient(d, x_adv, unconnected_gradients=tf.UnconnectedGradients.ZERO) for d in diffs],
        axis=1,
    )
    del tape
    f = tf.stack(diffs, axis=1)  # (B, K - 1)
    w_norm = tf.norm(tf.reshape(w, [tf.shape(w)[0], nb_candidate - 1, -1]), axis=2)
    best = tf.argmin(tf.abs(f) / (w_norm + _NORM_EPS), axis=1, output_type=tf.int32)
    f_best = tf.gather(f, best, batch_dims=1)
    w_best = tf.gather(w, best, batch_dims=1)
    norm_best = tf.gather(w_norm, best, batch_dims=1)
    scale = (tf.abs(f_best) + _LOGIT_EPS) / tf.square(norm_best + _NORM_EPS)
    scale = tf.reshape(scale, [-1] + [1] * (x.shape.rank - 1))
    r_tot = r_tot + scale * w_best
    x_adv = tf.clip_by_value(x + (1.0 + overshoot) * r_tot, clip_min, clip_max)
    return x_adv, r_tot, tf.argmax(model_fn(x_adv), axis=1, output_type=tf.int32)


def deepfool(
    model_fn,
    x,
    nb_candidate=10,
    overshoot=0.02,
    max_iter=50,
    clip_min=0.0,
    clip_max=1.0,
    return_details=False,
):
    """The untargeted L2 DeepFool attack, batched.

    Moosavi-Dezfooli, Fawzi and Frossard, 2016, "DeepFool: a simple and
    accurate method to fool deep neural networks",
    https://arxiv.org/abs/1511.04599. Parameters and defaults are CleverHans
    v3's `DeepFool`; the iteration is that of the authors' reference code and
    foolbox 3's `L2DeepFoolAttack` (candidates fixed from the clean logits,
    overshoot applied at every step, where CleverHans v3 re-ranks the
    candidates each step and overshoots once at the end):

    The candidates are the `nb_candidate` top classes of the clean logits,
    the first being the original label. At each iteration, for
    `f_k = z_k - z_orig` and `w_k = grad f_k` at the current `x_adv`, the
    closest linearised boundary `k* = argmin_k |f_k| / ||w_k||_2` gives the
    step `r = (|f_k*| + 1e-4) * w_k* / ||w_k*||_2^2`; the steps are summed
    into `r_tot` and `x_adv = clip(x + (1 + overshoot) * r_tot)`. An input
    stops as soon as the model's label at `x_adv` differs from the original
    one (at iteration 0 if it already does); the others go on, until
    `max_iter` steps. Finished inputs leave the batch.

    Args:
        model_fn: a callable that takes a batch of inputs and returns logits
            of shape (N, num_classes). Pass the same callable (e.g. the Keras
            model itself) across calls: the compiled step is cached per
            callable, and a new lambda each call recompiles it.
        x: a batch of inputs, shape (N, ...), inside [clip_min, clip_max].
        nb_candidate: the number of top classes considered, in
            [2, num_classes].
        overshoot: how far past the boundary to go, as a fraction of r_tot.
        max_iter: the maximum number of steps per input.
        clip_min: the smallest input value, or None (with clip_max) for no
            clipping.
        clip_max: the largest input value, or None (with clip_min).
        return_details: also return per-input success and step counts.

    Returns:
        The float32 adversarial inputs `x_adv`, of `x`'s shape. With
        `return_details`, the tuple `(x_adv, success, iterations)`: `success`
        (bool, (N,)) says whether the label at `x_adv` differs from the clean
        one, `iterations` (int32, (N,)) how many steps were taken. Inputs on
        which the attack fails (e.g. a model whose logits do not depend on
        the input) come back with `success` False, without NaN or inf.

    Raises:
        ValueError: for nb_candidate < 2 or above the number of classes,
            negative or non-finite overshoot, max_iter < 1, one-sided or
            empty clip range, or `x` not a batch.
    """
    _check_args(nb_candidate, overshoot, max_iter, clip_min, clip_max)
    x = np.array(tf.cast(as_float_input(x), tf.float32))
    x_adv, success, iterations = x.copy(), np.zeros(len(x), bool), np.zeros(len(x), np.int32)
    if len(x):
        batch = tf.TensorSpec([None, *x.shape[1:]], tf.float32)
        predict = _predict.get_concrete_function(model_fn, batch)
        logits = tf.concat([predict(model_fn, x[idx]) for idx in _chunks(np.arange(len(x)))], axis=0)
        if logits.shape.rank != 2 or logits.shape[0] != len(x):
            raise ValueError(f"`model_fn` must return logits of shape (N, C). Received: shape={tuple(logits.shape)}")
        if nb_candidate > logits.shape[1]:
            raise ValueError(
                f"`nb_candidate` must not exceed the number of classes, {logits.shape[1]}. "
                f"Received: nb_candidate={nb_candidate}"
            )
        if clip_min is None:
            clip_min, clip_max = -np.inf, np.inf
        scalars = [tf.constant(v, tf.float32) for v in (overshoot, clip_min, clip_max)]
        candidate_spec = tf.TensorSpec([None, nb_candidate], tf.int32)
        step = _step.get_concrete_function(model_fn, nb_candidate, *scalars, batch, batch, batch, candidate_spec)
        step = functools.partial(step, model_fn, nb_candidate, *scalars)
        # top_k and argmax both break ties towards the lower index, so the
        # first candidate is the argmax label.
        candidates = tf.math.top_k(logits, k=nb_candidate).indices.numpy()
        labels = tf.argmax(logits, axis=1, output_type=tf.int32).numpy()
        _iterate(step, x, candidates, labels, max_iter, x_adv, success, iterations)

    x_adv = tf.convert_to_tensor(x_adv)
    if return_details:
        return x_adv, tf.convert_to_tensor(success), tf.convert_to_tensor(iterations)
    return x_adv


def _iterate(step, x, candidates, labels, max_iter, x_adv, success, iterations):
    """Steps the inputs whose label is still the original one until none is
    left or after `max_iter` steps, filling `x_adv`, `success`, `iterations`."""
    original = candidates[:, 0]
    r_tot = np.zeros_like(x)
    active = np.arange(len(x))
    for i in range(max_iter + 1):
        changed = labels[active] != original[active]
        success[active[changed]] = True
        active = active[~changed]
        if not active.size or i == max_iter:
            return
        for idx in _chunks(active):
            new_x, new_r, new_labels = step(x_adv[idx], x[idx], r_tot[idx], candidates[idx])
            x_adv[idx] = new_x.numpy()
            r_tot[idx] = new_r.numpy()
            labels[idx] = new_labels.numpy()
        iterations[active] += 1


def _chunks(indices):
    """`indices` in pieces of _CHUNK and a last, smaller one: the model's
    compiled kernels (RotConv's, padded to a few batch sizes) then meet
    full chunks and one remainder per iteration, not a new size per chunk."""
    return np.array_split(indices, range(_CHUNK, indices.size, _CHUNK))
