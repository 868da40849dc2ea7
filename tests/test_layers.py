import doctest
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
from keras_uap.layers import (
    GroupPooling,
    GroupSpatialMaxPooling2D,
    P4ConvP4,
    P4ConvZ2,
    check_equivariance,
)
from keras_uap.layers import (
    conv_args,
    group_pooling,
    group_spatial_max_pooling_2d,
    p4_conv_p4,
    p4_conv_z2,
)

from layer_backends import tensorflow_only, to_numpy

ATOL = 1e-5


def _rng_input(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _rotate_offset_inverse(u_row, u_col, r):
    """R^-r applied to a centred (row, col) offset; R turns counter-clockwise on
    screen (row axis pointing down)."""
    for _ in range(r % 4):
        u_row, u_col = u_col, -u_row
    return u_row, u_col


def _reference_group_correlation(x, kernel, input_p4):
    """Explicit-loop p4 correlation from the definition
    out(t, r) = sum_{c, s, u} x(t + u, c, s) psi_c(R^-r u, s - r), valid padding."""
    n, h, w, cin = x.shape
    k = kernel.shape[0]
    half = k // 2
    filters = kernel.shape[-1]
    groups = 4 if input_p4 else 1
    channels = cin // groups
    grouped_kernel = kernel.reshape(k, k, channels, groups, filters)
    grouped_x = x.reshape(n, h, w, channels, groups)
    out = np.zeros((n, h - k + 1, w - k + 1, filters, 4), dtype=np.float64)
    for r in range(4):
        for s in range(groups):
            s_kernel = (s - r) % 4 if input_p4 else 0
            for a in range(k):
                for b in range(k):
                    src_row, src_col = _rotate_offset_inverse(a - half, b - half, r)
                    weight = grouped_kernel[src_row + half, src_col + half, :, s_kernel, :]
                    patch = grouped_x[:, a:a + h - k + 1, b:b + w - k + 1, :, s]
                    out[..., r] += np.einsum("nhwc,cf->nhwf", patch, weight)
    return out.reshape(n, h - k + 1, w - k + 1, filters * 4)


@pytest.mark.parametrize("layer_cls,cin,input_p4", [(P4ConvZ2, 3, False), (P4ConvP4, 8, True)])
def test_matches_explicit_loop_reference(layer_cls, cin, input_p4):
    x = _rng_input((2, 9, 9, cin))
    layer = layer_cls(5, 3, use_bias=False)
    out = to_numpy(layer(x))
    expected = _reference_group_correlation(x.astype(np.float64), layer.kernel.numpy().astype(np.float64),
                                            input_p4)
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=1e-4)


def test_bias_is_shared_by_the_four_rotations():
    layer = P4ConvZ2(3, 3, bias_initializer="random_normal")
    out = to_numpy(layer(np.zeros((1, 5, 5, 1), "float32")))
    np.testing.assert_allclose(out[0, 0, 0], np.repeat(layer.bias.numpy(), 4), atol=1e-7)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_p4convz2_equivariance(padding):
    errors = check_equivariance(P4ConvZ2(6, 3, padding=padding), _rng_input((2, 28, 28, 1)), "planar", "p4")
    assert max(errors.values()) < ATOL, errors


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_p4convp4_equivariance(padding):
    errors = check_equivariance(P4ConvP4(6, 3, padding=padding), _rng_input((2, 26, 26, 20)), "p4", "p4")
    assert max(errors.values()) < ATOL, errors


def _stack():
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        P4ConvZ2(4, 3, activation="relu"),
        P4ConvP4(4, 3, activation="relu"),
        GroupSpatialMaxPooling2D(2),
        P4ConvP4(6, 3, activation="relu"),
        GroupSpatialMaxPooling2D(2),
    ])


def test_stack_with_pooling_is_equivariant():
    errors = check_equivariance(_stack(), _rng_input((2, 28, 28, 1)), "planar", "p4")
    assert max(errors.values()) < ATOL, errors


def test_group_pooling_gives_rotation_invariant_features():
    stack = _stack()
    for mode in ("max", "mean"):
        pooled = keras.Sequential([stack, GroupPooling(mode)])
        errors = check_equivariance(pooled, _rng_input((2, 28, 28, 1)), "planar", "planar")
        assert max(errors.values()) < ATOL, (mode, errors)
    globally = keras.Sequential([stack, GroupPooling("max"), keras.layers.GlobalMaxPooling2D()])
    errors = check_equivariance(globally, _rng_input((2, 28, 28, 1)), "planar", "invariant")
    assert max(errors.values()) < ATOL, errors


def test_equivariance_check_detects_a_broken_layer():
    # A plain Conv2D with random filters is not p4-equivariant: the check must say so.
    broken = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(8, 3)])
    assert max(check_equivariance(broken, _rng_input((1, 12, 12, 1)), "planar", "p4").values()) > 0.1


@pytest.mark.parametrize("layer,shape,expected", [
    (P4ConvZ2(10, 3), (2, 28, 28, 1), (2, 26, 26, 40)),
    (P4ConvZ2(10, 3, padding="same", strides=2), (2, 28, 28, 3), (2, 14, 14, 40)),
    (P4ConvP4(20, 3), (2, 12, 12, 40), (2, 10, 10, 80)),
    (GroupSpatialMaxPooling2D(2), (2, 8, 8, 80), (2, 4, 4, 80)),
    (GroupPooling("mean"), (2, 4, 4, 80), (2, 4, 4, 20)),
])
def test_shapes_and_config_round_trip(layer, shape, expected):
    out = layer(np.zeros(shape, "float32"))
    assert tuple(out.shape) == expected
    assert tuple(layer.compute_output_shape(shape)) == expected
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_errors_are_pinned():
    with pytest.raises(ValueError, match="`filters` must be a positive int. Received: filters=-3"):
        P4ConvZ2(-3, 3)
    with pytest.raises(ValueError, match="square"):
        P4ConvZ2(4, (3, 5))
    with pytest.raises(ValueError, match="Received: padding=causal"):
        P4ConvP4(4, 3, padding="causal")
    with pytest.raises(ValueError, match="multiple of 4"):
        P4ConvP4(4, 3)(np.zeros((1, 8, 8, 6), "float32"))
    with pytest.raises(ValueError, match="Received: mode=sum"):
        GroupPooling("sum")
    for bad in (True, 2.0, "4", 0):
        with pytest.raises(ValueError, match=f"`filters` must be a positive int. Received: filters={bad}"):
            P4ConvZ2(bad, 3)
    with pytest.raises(ValueError, match="square.*Received: kernel_size=3.5"):
        P4ConvP4(4, 3.5)
    with pytest.raises(ValueError, match=r"`strides` must be a positive int or pair. Received: strides=\(1, 0\)"):
        P4ConvZ2(4, 3, strides=(1, 0))
    with pytest.raises(ValueError, match="channels-last only. Received: data_format=channels_first"):
        GroupSpatialMaxPooling2D(2, data_format="channels_first")


@pytest.mark.parametrize("layer,shape", [
    (P4ConvZ2(4, 5), (2, 4, 8, 1)),
    (P4ConvP4(4, 3, strides=2), (2, 8, 2, 8)),
])
def test_a_valid_kernel_larger_than_the_input_is_an_error_not_an_empty_map(layer, shape):
    with pytest.raises(ValueError, match=r"padding='valid' needs inputs of at least \d+x\d+ pixels"):
        layer.compute_output_shape(shape)
    with pytest.raises(ValueError, match=r"padding='valid' needs inputs of at least \d+x\d+ pixels"):
        layer(np.zeros(shape, "float32"))


def test_numpy_integers_are_accepted_and_configs_hold_python_ints():
    lift = P4ConvZ2(np.int64(3), np.int32(3), strides=np.int64(1), padding="SAME")
    group = P4ConvP4(np.int32(2), (np.int64(3), 3), strides=(np.int32(1), 1))
    assert tuple(group(lift(np.zeros((1, 6, 6, 1), "float32"))).shape) == (1, 4, 4, 8)
    for layer in (lift, group):
        json.dumps(layer.get_config())  # NumPy integers would not serialise
        assert all(type(v) is int for v in (layer.filters,) + layer.kernel_size + layer.strides)
    assert lift.padding == "same"


def test_conv_output_length_matches_the_backend_convolution():
    for size, kernel, stride, padding in [(7, 3, 2, "valid"), (7, 3, 2, "same"), (8, 8, 3, "valid"), (5, 9, 4, "same")]:
        expected = keras.ops.conv(np.zeros((1, size, size, 1), "float32"), np.zeros((kernel, kernel, 1, 1), "float32"),
                                  strides=stride, padding=padding).shape[1]
        assert conv_args.conv_output_length(size, kernel, stride, padding) == expected
    assert conv_args.conv_output_length(None, 3, 1, "valid") is None


@pytest.mark.parametrize("module", [p4_conv_z2, p4_conv_p4, group_spatial_max_pooling_2d, group_pooling])
def test_docstring_examples_run_as_shown(module):
    results = doctest.testmod(module, extraglobs={"np": np}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert results.attempted > 0 and results.failed == 0


def _functional_model():
    inputs = keras.Input((28, 28, 1))
    h = P4ConvZ2(4, 3, activation="relu")(inputs)
    h = P4ConvP4(4, 3, activation="relu")(h)
    h = GroupSpatialMaxPooling2D(2)(h)
    h = GroupPooling("max")(h)
    h = keras.layers.Flatten()(h)
    return keras.Model(inputs, keras.layers.Dense(10)(h))


def test_one_training_step_lowers_the_loss():
    keras.utils.set_random_seed(0)
    model = _functional_model()
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = _rng_input((16, 28, 28, 1))
    y = np.arange(16) % 10
    before = model.evaluate(x, y, verbose=0)
    for _ in range(3):
        model.train_on_batch(x, y)
    assert model.evaluate(x, y, verbose=0) < before


def test_keras_file_loads_in_fresh_process_with_identical_outputs(tmp_path):
    model = _functional_model()
    x = _rng_input((3, 28, 28, 1))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", to_numpy(model(x)))
    model.save(tmp_path / "m.keras")
    script = (
        "import numpy as np, keras, keras_uap.layers, sys\n"
        "d = sys.argv[1]\n"
        "m = keras.saving.load_model(d + '/m.keras')\n"
        "y = keras.ops.convert_to_numpy(m(np.load(d + '/x.npy')))\n"
        "np.testing.assert_array_equal(y, np.load(d + '/y.npy'))\n"
        "print('ok')\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


@tensorflow_only
def test_export_gives_a_savedmodel_with_the_same_logits(tmp_path):
    import tensorflow as tf

    model = _functional_model()
    x = _rng_input((3, 28, 28, 1))
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    (out,) = served(tf.constant(x)).values()
    np.testing.assert_allclose(out.numpy(), to_numpy(model(x)), atol=1e-5)
