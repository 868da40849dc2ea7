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
# Why any layout: RotConv's window-column product writes the responses
# orientation first (a row per orientation and filter), and the reduction
# then combines whole contiguous rows, vectorised across pixels. In a
# convolution's layout (orientations inside each pixel's channels) XLA
# vectorises across the F filters of one pixel: 6 of 8 lanes at RotEqNet's
# first layer, 3.5 against 2.9 ms for the pooling alone there (batch 64,
# measured), but no transpose of the responses where RotConv convolves
# (rot_conv_tensorflow.py). The reduction runs over whichever axis holds
# the orientations.


def _ordered_keys(values):
    """int64 keys of float32 `values` with the same order (-0.0 counted as +0.0):
    the float's bits, its magnitude bits flipped when negative."""
    bits = tf.bitcast(values, tf.int32)
    bits = tf.where(tf.equal(bits, _NEGATIVE_ZERO), tf.zeros_like(bits), bits)
    return tf.cast(tf.where(bits < 0, tf.bitwise.bitwise_xor(bits, _MAGNITUDE), bits), tf.int64)


def _strongest_orientation(responses, axis=0):
    """Over the orientation axis `axis`: the max and the index of its first
    occurrence, in ONE max-reduction (a max and an arg-max are two passes
    over the responses): of int64 keys whose high half orders as the
    response and whose low half as the reversed index, so that of equal
    responses the first orientation wins."""
    n_angles = responses.shape[axis]
    angle_axis = [1] * responses.shape.rank
    angle_axis[axis] = n_angles
    reversed_index = tf.reshape(tf.range(n_angles - 1, -1, -1, dtype=tf.int64), angle_axis)
    keys = tf.bitwise.bitwise_or(tf.bitwise.left_shift(_ordered_keys(tf.cast(responses, tf.float32)), 32),
                                 reversed_index)
    best = tf.reduce_max(keys, axis=axis)
    winner = n_angles - 1 - tf.cast(tf.bitwise.bitwise_and(best, 0xFFFFFFFF), tf.int32)
    bits = tf.cast(tf.bitwise.right_shift(best, 32), tf.int32)
    bits = tf.where(bits < 0, tf.bitwise.bitwise_xor(bits, _MAGNITUDE), bits)
    return tf.cast(tf.bitcast(bits, tf.float32), responses.dtype), winner


def _pixels_first(layout):
    return layout.index("m") < layout.index("f")


def _filter_axis_bias(bias, layout):
    return bias if _pixels_first(layout) else bias[:, None]


@tf.function(jit_compile=True)
def _pooled_field(responses, bias, directions, layout):
    strength, winner = _strongest_orientation(responses, layout.index("a"))  # (F, M) or (M, F)
    strength = tf.nn.relu(strength + _filter_axis_bias(bias, layout))
    field = tf.expand_dims(strength, -1) * tf.gather(directions, winner)
    return field if _pixels_first(layout) else tf.transpose(field, (1, 0, 2))


@tf.function(jit_compile=True)
def _pooled_field_gradients(responses, bias, directions, upstream, layout):
    # The reduction again rather than its results kept from the forward pass,
    # so that a forward pass alone writes nothing but the field. What that
    # costs a caller taking many gradients from one forward pass (DeepFool,
    # one per candidate class) is a reduction, a fraction of each gradient.
    axis = layout.index("a")
    strength, winner = _strongest_orientation(responses, axis)
    maxima = tf.equal(responses, tf.expand_dims(strength, axis))
    ties = tf.reduce_sum(tf.cast(maxima, responses.dtype), axis=axis)
    if not _pixels_first(layout):
        upstream = tf.transpose(upstream, (1, 0, 2))  # (F, M, 2), as `strength` and `winner`
    magnitude_grad = tf.reduce_sum(upstream * tf.gather(directions, winner), axis=-1)
    passed = strength + _filter_axis_bias(bias, layout) > 0
    strength_grad = tf.where(passed, magnitude_grad, tf.zeros_like(magnitude_grad))
    share = tf.expand_dims(strength_grad / ties, axis)
    responses_grad = tf.where(maxima, share, tf.zeros_like(share))
    return responses_grad, tf.reduce_sum(strength_grad, axis=0 if _pixels_first(layout) else 1)


def orientation_pooled_field(responses, bias, layout="afm"):
    """The vector field of the strongest orientation per pixel and filter.

    Args:
        responses: 3D, its axes named by `layout`: `a` the n_angles
            orientations, `f` the F filters, `m` the M pixels (all images'
            positions, flattened).
        bias: `(F,)`, added to the strongest response of each filter.
        layout: a Python string, e.g. "afm" (RotConv's window columns'
            product), "amf" (its product orientation by orientation) or
            "maf" (a convolution's output, channel `a * F + f`).

    Returns:
        `(M, F, 2)`: `relu(s + bias) * (cos alpha_a*, sin alpha_a*)`, with
        `s` the largest response over the orientations, `a*` the FIRST
        orientation reaching it and `alpha_a = 360 * a / n_angles` degrees.
        The gradient of `s` is split equally among tied maxima, as for `max`.
        First-order gradients only: the gradient is an XLA kernel without a
        gradient of its own.
    """
    if sorted(layout) != ["a", "f", "m"]:
        raise ValueError(f"`layout` must order the letters 'a', 'f' and 'm'. Received: layout={layout!r}")
    directions = tf.constant(direction_table(responses.shape[layout.index("a")]), dtype=responses.dtype)

    @tf.custom_gradient
    def pool(responses, bias):
        def grad(upstream):
            return _pooled_field_gradients(responses, bias, directions, upstream, layout)

        # stop_gradient: a tape watching the inputs would otherwise ask for the
        # XLA reduction's own gradient (there is none; `grad` is the gradient).
        field = _pooled_field(tf.stop_gradient(responses), tf.stop_gradient(bias), directions, layout)
        return field, grad

    return pool(responses, bias)
