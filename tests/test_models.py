"""The study's models: shapes as in the papers, and RotEqNet's invariance."""

import importlib
import inspect

import numpy as np
import pytest

from keras_uap.layers import RotConv, Vector2Magnitude
from keras_uap.models import MODELS, build_model, build_roteqnet
from keras_uap.errors import UserError
from keras_uap.pipelines.code_versions import reachable_modules
from keras_uap.pipelines.train_stage import MODEL_PACKAGES, TRAIN_STAGE
from keras_uap.pipelines.runner import stage_version


def test_roteqnet_is_the_mnist_rot_network_of_the_paper():
    model = build_roteqnet()
    rot = [layer for layer in model.layers if isinstance(layer, RotConv)]
    assert [(r.filters, r.kernel_size, r.n_angles, r.mode) for r in rot] == [
        (6, (9, 9), 17, "scalar"), (16, (9, 9), 17, "vector"), (32, (9, 9), 17, "vector")]
    # 28 -> 28 -> pool 14 -> 14 -> pool 7 -> pad 9 -> valid 9x9 -> 1x1.
    assert [tuple(r.output.shape[1:3]) for r in rot] == [(28, 28), (14, 14), (1, 1)]
    magnitude = next(layer for layer in model.layers if isinstance(layer, Vector2Magnitude))
    assert tuple(magnitude.output.shape[1:]) == (1, 1, 32)
    assert model.outputs[0].shape[1:] == (10,)


def test_roteqnet_takes_exactly_the_sizes_that_end_at_one_pixel():
    for side in (28, 31):
        assert build_roteqnet((side, side, 3), num_classes=4).outputs[0].shape[1:] == (4,)
    for shape in ((27, 28, 1), (32, 32, 3), (28, 64, 1)):
        with pytest.raises(ValueError, match="28 to 31 pixels"):
            build_roteqnet(shape)


def test_roteqnet_with_four_orientations_is_invariant_to_quarter_turns():
    # With n_angles a multiple of 4 every layer commutes exactly with 90-degree
    # rotations (RotConv, pooling on even sizes, symmetric padding), and the
    # head sees rotation-invariant magnitudes: logits equal up to rounding.
    model = build_roteqnet(n_angles=4)
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    logits = model.predict_on_batch(x)
    for k in (1, 2, 3):
        rotated = model.predict_on_batch(np.rot90(x, k, axes=(1, 2)).copy())
        np.testing.assert_allclose(rotated, logits, atol=1e-5 * np.abs(logits).max())


def test_registry_names_every_model():
    assert set(MODELS) == {"stdcnn", "gcnn", "roteqnet"}
    with pytest.raises(UserError, match="unknown model 'resnet'"):
        build_model("resnet")


def test_train_version_depends_only_on_the_trained_models_code():
    versions = {m: stage_version(TRAIN_STAGE, {"model": m}) for m in MODELS}
    # One module (models/table2.py) builds StdCNN and GCNN; RotEqNet's layers are others.
    assert versions["stdcnn"] == versions["gcnn"] != versions["roteqnet"]


def _keras_uap_modules_used_by(module_name, seen=None):
    """`module_name` and every keras_uap.layers/models module its names come from, transitively."""
    seen = set() if seen is None else seen
    if module_name in seen:
        return seen
    seen.add(module_name)
    for value in vars(importlib.import_module(module_name)).values():
        source = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
        if isinstance(source, str) and source.startswith(("keras_uap.layers.", "keras_uap.models.")):
            _keras_uap_modules_used_by(source, seen)
    return seen


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_sources_cover_the_code_of_every_layer_the_model_uses(name):
    # A module the train stage's code version missed would let its changes through without a retrain.
    model = build_model(name)
    layer_modules = {type(layer).__module__ for layer in model._flatten_layers(include_self=False)}
    needed = set()
    for module_name in sorted(m for m in layer_modules if m.startswith("keras_uap.")):
        _keras_uap_modules_used_by(module_name, needed)
    reached = set(reachable_modules("keras_uap.pipelines.train_stage", MODELS[name].__module__,
                                    skip=MODEL_PACKAGES))
    assert needed <= reached, sorted(needed - reached)
