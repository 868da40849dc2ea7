"""RotConv compiles its XLA kernels once per batch shape: DeepFool's
shrinking batches must land on a few padded shapes, and the padding must not
change DeepFool's results."""

import numpy as np
import pytest
from small_models import strided_cnn
import tensorflow as tf

import keras
from keras import layers

from keras_uap.attacks import deepfool
from keras_uap.layers import RotConv, Vector2Magnitude
from keras_uap.layers import rot_conv_tensorflow

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="RotConv's TensorFlow path")

N_INPUTS = 300


def _rot_conv_model(seed=0):
    """A scalar and a vector RotConv, as in RotEqNet, small enough to attack 300 inputs in seconds."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        RotConv(4, 5, n_angles=8, mode="scalar", strides=2, padding="same"),
        RotConv(4, 5, n_angles=8, mode="vector", strides=2, padding="same"),
        Vector2Magnitude(),
        layers.Flatten(),
        layers.Dense(10),
    ])


@pytest.fixture(scope="module")
def inputs(mnist_raw):
    return mnist_raw["test_images"][:N_INPUTS, :, :, None].astype("float32") / 255.0


class _BatchSizes:
    """Wraps a model and records the batch size of every call it runs (the
    calls run inside DeepFool's compiled step, so the record is made at run time)."""

    def __init__(self, model):
        self.model, self.sizes = model, set()

    def _record(self, size):
        self.sizes.add(int(size))
        return size

    def __call__(self, x):
        size = tf.numpy_function(self._record, [tf.shape(x)[0]], tf.int32, stateful=True)
        with tf.control_dependencies([size]):
            return self.model(x)


@pytest.mark.mnist
def test_deepfool_meets_at_most_five_rot_conv_shapes_on_300_inputs(inputs):
    """RotConv's padded sizes of the batches DeepFool runs while its unfinished set shrinks."""
    # The sizes depend on the attack, not on how the model computes: a plain CNN gives them in seconds.
    keras.utils.set_random_seed(0)
    model = _BatchSizes(strided_cnn((28, 28, 1), 10))
    _, success, iterations = deepfool(model, inputs, max_iter=20, return_details=True)
    # The run must exercise the shrinking batch for the count to mean anything.
    assert np.mean(success.numpy()) > 0.9 and len(np.unique(iterations.numpy())) >= 4
    assert len(model.sizes) > 5
    padded = {int(rot_conv_tensorflow.padded_batch(tf.constant(size))) for size in model.sizes}
    # Each padded size is an XLA compile of every RotConv kernel, about 1.5 s a layer on a CPU.
    assert len(padded) <= 5, sorted(model.sizes)


@pytest.mark.mnist
def test_padding_leaves_deepfool_results_unchanged(inputs, monkeypatch):
    """DeepFool through the padded RotConv against the same weights computed at
    every batch's own size (the padding rows are zeros, and each row depends on itself alone).
    Bitwise equal here; a matrix product with more rows may round differently
    on another CPU (RotEqNet's DeepFool on 300 inputs: 3.6e-7 at most)."""
    x = inputs[:16]
    padded = deepfool(_rot_conv_model(), x, nb_candidate=3, max_iter=20, return_details=True)
    # A new model object: the compiled step is cached per callable, and this one must trace without padding.
    monkeypatch.setattr(rot_conv_tensorflow, "padded_batch", lambda batch: batch)
    unpadded = deepfool(_rot_conv_model(), x, nb_candidate=3, max_iter=20, return_details=True)
    np.testing.assert_allclose(padded[0].numpy(), unpadded[0].numpy(), rtol=0, atol=1e-5)
    for got, expected in zip(padded[1:], unpadded[1:]):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
