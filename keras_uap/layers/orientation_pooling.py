"""RotConv's orientation pooling: responses to a vector field, in XLA kernels."""

import tensorflow as tf

from keras_uap.layers.vector_ops import direction_table

_NEGATIVE_ZERO = -(2**31)  # the bits of -0.0 as an int32
_MAGNITUDE = 2**31 - 1

# Why XLA: the max, the arg-max, the bias, the ReLU and the vector output
# are one pass over the responses in one XLA kernel; as TF ops (top_k or
# argmax, gather, add, relu, multiply) they took twice as long as the
# convolution before them at RotEqNet's first layer. XLA compiles once per
# input shape (0.1-0.3 s on 2 cores).
#
# Why packed keys: without TF's private XLA wrappers (a variadic reduction
# carrying value and index) the max and its first index come from ONE
# reduce_max of int64 keys, exact and bit for bit the same results; as
# reduce_max + argmax they are two passes over the responses (1.3x the
# forward time of RotEqNet's second layer in a loaded run). Measured on the
# pooling alone (interleaved medians, batch 64, first / second layer's
# shapes): forward 2.3 / 1.3 ms against 5.0 / 1.4 ms for the variadic
# reduction, forward + backward 25 / 5.4 against 22 / 4.4 ms (the backward
# counts tied maxima in a pass of its own).
#
# Why orientation first: RotConv's matrix product writes the responses so
# (a row per orientation and filter), and the reduction then combines whole
# contiguous rows, vectorised across pixels. In a convolution's layout
# (orientations inside each pixel's channels) XLA vectorised it across the F
# filters of one pixel only (6 of 8 lanes at RotEqNet's first layer): 3.5
# against 2.9 ms for the pooling alone there (batch 64, measured).


def _ordered_keys(values):
    """int64 keys of float32 `values` with the same order (-0.0 counted as +0.0):
    the float's bits, its magnitude bits flipped when negative."""
    bits = tf.bitcast(values, tf.int32)
    bits = tf.where(tf.equal(bits, _NEGATIVE_ZERO), tf.zeros_like(bits), bits)
    return tf.cast(tf.where(bits < 0, tf.bitwise.bitwise_xor(bits, _MAGNITUDE), bits), tf.int64)


def _strongest_orientation(responses):
    """Over the orientation axis (0): the max and the index of its first
    occurrence, in ONE max-reduction (a max and an arg-max are two passes
    over the responses): of int64 keys whose high half orders as the
    response and whose low half as the reversed index, so that of equal
    responses the first orientation wins."""
    n_angles = responses.shape[0]
    angle_axis = [n_angles] + [1] * (responses.shape.rank - 1)
    reversed_index = tf.reshape(tf.range(n_angles - 1, -1, -1, dtype=tf.int64), angle_axis)
    keys = tf.bitwise.bitwise_or(tf.bitwise.left_shift(_ordered_keys(tf.cast(responses, tf.float32)), 32),
                                 reversed_index)
    best = tf.reduce_max(keys, axis=0)
    winner = n_angles - 1 - tf.cast(tf.bitwise.bitwise_and(best, 0xFFFFFFFF), tf.int32)
    bits = tf.cast(tf.bitwise.right_shift(best, 32), tf.int32)
    bits = tf.where(bits < 0, tf.bitwise.bitwise_xor(bits, _MAGNITUDE), bits)
    return tf.cast(tf.bitcast(bits, tf.float32), responses.dtype), winner


def _filter_axis_bias(bias, pixels_first):
    return bias if pixels_first else bias[:, None]


@tf.function(jit_compile=True)
def _pooled_field(responses, bias, directions, pixels_first):
    strength, winner = _strongest_orientation(responses)  # (F, M) or (M, F)
    strength = tf.nn.relu(strength + _filter_axis_bias(bias, pixels_first))
    field = tf.expand_dims(strength, -1) * tf.gather(directions, winner)
    return field if pixels_first else tf.transpose(field, (1, 0, 2))


@tf.function(jit_compile=True)
def _pooled_field_gradients(responses, bias, directions, upstream, pixels_first):
    # The reduction again rather than its results kept from the forward pass,
    # so that a forward pass alone writes nothing but the field. What that
    # costs a caller taking many gradients from one forward pass (DeepFool,
    # one per candidate class) is a reduction, a fraction of each gradient.
    strength, winner = _strongest_orientation(responses)
    ties = tf.reduce_sum(tf.cast(tf.equal(responses, tf.expand_dims(strength, 0)), responses.dtype), axis=0)
    if not pixels_first:
        upstream = tf.transpose(upstream, (1, 0, 2))  # (F, M, 2), as `strength` and `winner`
    magnitude_grad = tf.reduce_sum(upstream * tf.gather(directions, winner), axis=-1)
    passed = strength + _filter_axis_bias(bias, pixels_first) > 0
    strength_grad = tf.where(passed, magnitude_grad, tf.zeros_like(magnitude_grad))
    share = tf.expand_dims(strength_grad / ties, 0)
    responses_grad = tf.where(tf.equal(responses, tf.expand_dims(strength, 0)), share, tf.zeros_like(share))
    return responses_grad, tf.reduce_sum(strength_grad, axis=0 if pixels_first else 1)


def orientation_pooled_field(responses, bias, pixels_first=False):
    """The vector field of the strongest orientation per pixel and filter.

    Args:
        responses: `(n_angles, F, M)`: orientation, then filter, then the M
            pixels (all images' positions, flattened); `(n_angles, M, F)`
            if `pixels_first`.
        bias: `(F,)`, added to the strongest response of each filter.
        pixels_first: the layout of `responses` (a Python bool).

    Returns:
        `(M, F, 2)`: `relu(s + bias) * (cos alpha_a*, sin alpha_a*)`, with
        `s` the largest response over the orientations, `a*` the FIRST
        orientation reaching it and `alpha_a = 360 * a / n_angles` degrees.
        The gradient of `s` is split equally among tied maxima, as for `max`.
        First-order gradients only: the gradient is an XLA kernel without a
        gradient of its own.
    """
    directions = tf.constant(direction_table(responses.shape[0]), dtype=responses.dtype)

    @tf.custom_gradient
    def pool(responses, bias):
        def grad(upstream):
            return _pooled_field_gradients(responses, bias, directions, upstream, pixels_first)

        # stop_gradient: a tape watching the inputs would otherwise ask for the
        # XLA reduction's own gradient (there is none; `grad` is the gradient).
        field = _pooled_field(tf.stop_gradient(responses), tf.stop_gradient(bias), directions, pixels_first)
        return field, grad

    return pool(responses, bias)
