"""RotConv's orientation pooling: responses to a vector field, in XLA kernels."""

import tensorflow as tf
# TF's wrappers of XLA operations (as jax2tf uses them): shipped with TF, not under tf.*.
from tensorflow.compiler.tf2xla.python import xla

from keras_uap.layers.vector_ops import direction_table

# Why XLA: the max, the arg-max, the bias, the ReLU and the vector output
# are one pass over the responses in one XLA kernel; as TF ops (top_k or
# argmax, gather, add, relu, multiply) they took twice as long as the
# convolution before them at RotEqNet's first layer. XLA compiles once per
# input shape (0.1-0.3 s on 2 cores).


@tf.function
def _keep_the_larger(value, index, other_value, other_index):
    """The reduction's step on (max, index of its first occurrence): the
    larger value wins; equal values keep the lower index."""
    greater, equal = other_value > value, other_value == value
    index = tf.where(greater, other_index, tf.where(equal, tf.minimum(index, other_index), index))
    return tf.maximum(value, other_value), index


@tf.function
def _keep_the_larger_and_count(value, index, ties, other_value, other_index, other_ties):
    """As `_keep_the_larger`, with how many elements reach the max."""
    greater, equal = other_value > value, other_value == value
    ties = tf.where(greater, other_ties, tf.where(equal, ties + other_ties, ties))
    return (*_keep_the_larger(value, index, other_value, other_index), ties)


def _strongest_orientation(responses, count_ties=False):
    """Over the orientation axis (-2): the max, the index of its first
    occurrence and, if `count_ties`, how many orientations reach it, in ONE
    variadic reduction (as max and arg-max ops: two passes). The count is
    optional because carrying it slows the reduction down (measured at
    RotEqNet's first layer)."""
    n_angles = responses.shape[-2]
    operands = [responses, tf.broadcast_to(tf.range(n_angles)[:, None], tf.shape(responses))]
    initial = [tf.constant(-float("inf"), responses.dtype), tf.constant(n_angles, tf.int32)]
    scalars = [tf.TensorSpec([], responses.dtype), tf.TensorSpec([], tf.int32)]
    step = _keep_the_larger
    if count_ties:
        operands.append(tf.ones_like(responses))
        initial.append(tf.constant(0, responses.dtype))
        scalars.append(tf.TensorSpec([], responses.dtype))
        step = _keep_the_larger_and_count
    return xla.variadic_reduce(operands, initial, [responses.shape.rank - 2],
                               step.get_concrete_function(*scalars * 2))


@tf.function(jit_compile=True)
def _pooled_field(responses, bias, directions):
    strength, winner = _strongest_orientation(responses)
    return tf.expand_dims(tf.nn.relu(strength + bias), -1) * tf.gather(directions, winner)


@tf.function(jit_compile=True)
def _pooled_field_gradients(responses, bias, directions, upstream):
    # The reduction again rather than its results kept from the forward pass,
    # so that a forward pass alone writes nothing but the field. What that
    # costs a caller taking many gradients from one forward pass (DeepFool,
    # one per candidate class) is a reduction, a fraction of each gradient.
    strength, winner, ties = _strongest_orientation(responses, count_ties=True)
    magnitude_grad = tf.reduce_sum(upstream * tf.gather(directions, winner), axis=-1)
    strength_grad = tf.where(strength + bias > 0, magnitude_grad, tf.zeros_like(magnitude_grad))
    share = tf.expand_dims(strength_grad / ties, -2)
    responses_grad = tf.where(tf.equal(responses, tf.expand_dims(strength, -2)), share, tf.zeros_like(share))
    leading_axes = list(range(strength_grad.shape.rank - 1))
    return responses_grad, tf.reduce_sum(strength_grad, axis=leading_axes)


def orientation_pooled_field(responses, bias):
    """The vector field of the strongest orientation per pixel and filter.

    Args:
        responses: `(..., n_angles, F)`, orientation before filter.
        bias: `(F,)`, added to the strongest response of each filter.

    Returns:
        `(..., F, 2)`: `relu(s + bias) * (cos alpha_a*, sin alpha_a*)`, with
        `s` the largest response over the orientations, `a*` the FIRST
        orientation reaching it and `alpha_a = 360 * a / n_angles` degrees.
        The gradient of `s` is split equally among tied maxima, as for `max`.
        First-order gradients only: the gradient is an XLA kernel without a
        gradient of its own.
    """
    directions = tf.constant(direction_table(responses.shape[-2]), dtype=responses.dtype)

    @tf.custom_gradient
    def pool(responses, bias):
        # stop_gradient: a tape watching the inputs would otherwise ask for the
        # XLA reduction's own gradient (there is none; `grad` is the gradient).
        def grad(upstream):
            return _pooled_field_gradients(responses, bias, directions, upstream)

        return _pooled_field(tf.stop_gradient(responses), tf.stop_gradient(bias), directions), grad

    return pool(responses, bias)
