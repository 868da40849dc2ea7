"""Models saved by an earlier version of the layers (tests/fixtures, written by
save_layer_fixtures.py before the layers were refactored) load with today's
code and compute the outputs stored beside them, on every backend."""

import os

import numpy as np
import pytest

import keras
import keras_uap.layers  # noqa: F401  (registers the layers for deserialisation)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


@pytest.mark.parametrize("name", ["p4", "vector"])
def test_a_model_saved_before_the_refactoring_loads_and_gives_its_stored_outputs(name):
    model = keras.saving.load_model(os.path.join(FIXTURES, f"{name}_layers.keras"))
    stored = np.load(os.path.join(FIXTURES, f"{name}_layers.npz"))
    outputs = np.asarray(keras.ops.convert_to_numpy(model(stored["x"], training=False)))
    assert np.abs(stored["y"]).max() > 0.1  # the stored outputs are not a degenerate all-zero map
    np.testing.assert_allclose(outputs, stored["y"], atol=1e-5, rtol=1e-5)
