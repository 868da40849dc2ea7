"""The window columns' own gradient (an XLA kernel beside the forward one,
so that a gradient reuses the forward kernel inference compiled) against
TensorFlow's automatic gradient of the same slices: bit for bit, so that
RotConv's gradients, and every attack's result, are those TF computed before."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras_uap.layers import RotConv, rot_conv_tensorflow
from keras_uap.layers.disk_windows import _gather_columns, disk_window_columns

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="RotConv's TensorFlow path")

# The plain slices in an XLA function, which a tape differentiates itself:
# TF's generated forward and backward functions, as before the custom gradient.
_automatic_columns = tf.function(_gather_columns, jit_compile=True)


def _random(shape, seed):
    return tf.constant(np.random.default_rng(seed).standard_normal(shape).astype("float32"))


def _columns_and_gradient(columns_fn, x, seed):
    with tf.GradientTape() as tape:
        tape.watch(x)
        columns = columns_fn(x)
    return columns, tape.gradient(columns, x, output_gradients=_random(columns.shape, seed))


@pytest.mark.parametrize("vector, batch, channels, size, height, width, strides, padding", [
    (False, 1, 1, 9, 14, 14, (1, 1), "same"), (False, 5, 3, 5, 12, 11, (2, 2), "same"),
    (False, 4, 2, 7, 13, 9, (2, 1), "valid"), (True, 3, 4, 5, 10, 10, (1, 1), "valid"),
    (True, 2, 6, 3, 9, 8, (2, 2), "same")])
def test_the_columns_gradient_is_tfs_automatic_gradient_bit_for_bit(vector, batch, channels, size, height,
                                                                     width, strides, padding):
    x = _random((batch, height, width, channels), seed=1)
    columns, gradient = _columns_and_gradient(
        lambda x: disk_window_columns(x, size, strides, padding, vector=vector), x, seed=2)
    expected_columns, expected_gradient = _columns_and_gradient(
        lambda x: _automatic_columns(x, size, strides, padding, vector), x, seed=2)
    np.testing.assert_array_equal(columns.numpy(), expected_columns.numpy())
    # Not a comparison of zeros: most pixels lie in some window's disk.
    assert np.count_nonzero(gradient.numpy()) > gradient.numpy().size / 2
    np.testing.assert_array_equal(gradient.numpy(), expected_gradient.numpy())


@pytest.mark.parametrize("mode, channels, strides, padding", [
    ("scalar", 1, 1, "same"), ("vector", 4, 2, "valid")])
def test_rot_conv_gradients_are_those_of_the_automatic_columns_gradient(mode, channels, strides, padding,
                                                                        monkeypatch):
    """Input, kernel and bias gradients, the tape inside a compiled step (a
    custom gradient's graph mode) as in training and the attacks."""
    keras.utils.set_random_seed(0)
    layer = RotConv(3, 5, n_angles=8, mode=mode, strides=strides, padding=padding,
                    bias_initializer="random_normal")
    x = _random((5, 12, 12, channels), seed=3)
    weights = _random(layer.compute_output_shape(x.shape), seed=4)

    def gradients(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) * weights)
        return tape.gradient(loss, [x, layer.kernel, layer.bias])

    got = tf.function(gradients)(x)
    monkeypatch.setattr(rot_conv_tensorflow, "disk_window_columns",
                        lambda inputs, size, strides, padding, vector: _automatic_columns(
                            inputs, size, tuple(strides), padding, vector))
    for actual, expected in zip(got, tf.function(gradients)(x)):
        np.testing.assert_array_equal(actual.numpy(), expected.numpy())
