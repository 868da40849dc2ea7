"""What the layer tests need to run on every Keras backend (TensorFlow, JAX):
no test module of the layers imports TensorFlow at import time."""

import numpy as np
import pytest

import keras

BACKEND = keras.backend.backend()

tensorflow_only = pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow only: RotConv's TensorFlow path or a SavedModel export")


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def input_gradient(fn, x):
    """d sum(fn(x)) / dx as a NumPy array, on the current backend."""
    x = keras.ops.convert_to_tensor(x)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(fn(x))
        return to_numpy(tape.gradient(total, x))
    if BACKEND == "jax":
        import jax

        return to_numpy(jax.grad(lambda v: keras.ops.sum(fn(v)))(x))
    if BACKEND == "torch":
        import torch

        x = x.detach().clone().requires_grad_(True)
        torch.sum(fn(x)).backward()
        return to_numpy(x.grad)
    raise NotImplementedError(f"no gradient helper for the {BACKEND} backend")
