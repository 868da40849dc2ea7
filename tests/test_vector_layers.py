"""Tests of the RotEqNet vector-field layers (RotConv, VectorMaxPool,
VectorBatchNorm, Vector2Magnitude).

Vector-field layout: (N, H, W, 2F), channel 2f the x-component (columns,
positive to the right), 2f + 1 the y-component (rows, positive UP). A rotation
by k * 90 degrees acts as `rotate_vector_field` (np.rot90 of the positions,
(x, y) -> (-y, x) per quarter turn).

Equivariance tolerances, all for rotations by 90, 180 and 270 degrees of
21 x 21 Gaussian-smoothed noise images (sigma 1.5), measured over 8 seeds
before fixing seed 0 here:
- n_angles = 4 or 8 (90 degrees is a sampled angle): max abs error of the
  output field / max |output| <= 6.4e-7 (float rounding; scalar, vector and
  stacked layers); asserted < 1e-5.
- n_angles = 17 (90 degrees is 4.25 steps of 21.2 degrees, so the winning
  orientation of the rotated image lands a quarter / half / three-quarter
  step from the rotated winner):
  * random he_normal 7x7 filters: relative L2 error of the magnitude maps
    0.12 mean, 0.19 max (tolerance 0.25); 80% on average (67% at worst) of
    the strong vectors (magnitude > 10% of the max) point within one step
    (21.2 degrees) of the rotated reference (tolerance >= 60%); the rest are orientation-pooling
    jumps between two peaks of a multi-lobed filter response (up to 180 degrees);
  * smooth single-lobed filters (Gaussian derivatives, sigma 1-2 px):
    relative L2 error of the whole field 0.22 mean, 0.24 max (tolerance 0.3),
    of the magnitudes 0.05 mean, 0.07 max (tolerance 0.1), >= 90% of the
    strong vectors within one step (tolerance >= 85%);
  * a scalar -> vector stack of such smooth layers (second layer a Gaussian
    times a fixed vector): field 0.25 mean, 0.35 max (tolerance 0.4);
    magnitudes 0.10 mean, 0.21 max (tolerance 0.25); >= 82% of the strong
    vectors within one step (tolerance >= 75%);
  * (not asserted) two random 5x5 layers, scalar -> vector: field 0.80 mean,
    1.30 max; magnitudes 0.30 mean, 0.47 max; 65% within one step.
  For comparison a WRONG action (vectors not rotated) gives relative L2
  errors >= 1.37, so these tolerances do detect a wrong rotation of the vectors.
"""

import doctest
import json

import numpy as np
import pytest
from scipy import ndimage

import keras
from keras_uap.layers import rot_conv, vector_batch_norm, vector_max_pool, vector_to_magnitude
from keras_uap.layers import (
    RotConv,
    Vector2Magnitude,
    VectorBatchNorm,
    VectorMaxPool,
    check_equivariance,
    rotate_planar,
    rotate_vector_field,
)
from keras_uap.layers.vector_ops import disk_mask
from layer_backends import input_gradient, tensorflow_only, to_numpy

EXACT_RTOL = 1e-5  # n_angles a multiple of 4, rotations by multiples of 90 degrees
STEP_17 = 360.0 / 17


def _rng_input(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _smooth_input(shape, seed=0, sigma=1.5):
    noise = np.random.default_rng(seed).standard_normal(shape)
    return np.stack([ndimage.gaussian_filter(img, (sigma, sigma, 0)) for img in noise]).astype("float32")


def _gaussian_derivative(k, sigma):
    """A k x k edge detector along +x (x right, y up): single-lobed in orientation."""
    centre = (k - 1) / 2
    rows, cols = np.mgrid[0:k, 0:k]
    x, y = cols - centre, centre - rows
    g = x * np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return (g / np.abs(g).sum()).astype("float32")


def _gaussian(k, sigma):
    centre = (k - 1) / 2
    rows, cols = np.mgrid[0:k, 0:k]
    g = np.exp(-((cols - centre) ** 2 + (rows - centre) ** 2) / (2 * sigma**2))
    return (g / g.sum()).astype("float32")


def _pairs(field):
    field = to_numpy(field)
    return field.reshape(field.shape[:-1] + (field.shape[-1] // 2, 2))


def _rotation_errors(fn, x, input_kind):
    """Per rotation k = 1, 2, 3: (relative L2 error of the field, of its
    magnitudes, fraction of strong vectors within one 17-angle step, relative
    L2 error against the wrong action that does not rotate the vectors)."""
    act_in = rotate_planar if input_kind == "planar" else rotate_vector_field
    reference = to_numpy(fn(x))
    results = []
    for k in (1, 2, 3):
        out = to_numpy(fn(np.ascontiguousarray(act_in(x, k))))
        expected = rotate_vector_field(reference, k)
        o, e = _pairs(out), _pairs(expected)
        mo, me = np.linalg.norm(o, axis=-1), np.linalg.norm(e, axis=-1)
        strong = me > 0.1 * me.max()
        angle = np.degrees(np.abs(np.angle((o[..., 0] + 1j * o[..., 1]) * np.conj(e[..., 0] + 1j * e[..., 1]))))
        results.append((
            np.linalg.norm(out - expected) / np.linalg.norm(expected),
            np.linalg.norm(mo - me) / np.linalg.norm(me),
            np.mean(angle[strong] <= STEP_17 + 0.1),
            np.linalg.norm(out - rotate_planar(reference, k)) / np.linalg.norm(expected),
        ))
    return np.array(results)


def _relative_exact_error(fn, x, input_kind, output_kind):
    errors = check_equivariance(fn, x, input_kind, output_kind)
    return max(errors.values()) / float(np.abs(to_numpy(fn(x))).max())


# ---------------------------------------------------------------- RotConv


def test_filter_bank_is_the_rot90_of_the_disk_masked_filter():
    layer = RotConv(3, 5, n_angles=4)
    layer.build((None, 9, 9, 2))
    kernel = layer.kernel.numpy() * disk_mask(5)[:, :, None, None]
    bank = to_numpy(layer.rotated_filter_bank()).reshape(5, 5, 2, 4, 3)
    for a in range(4):
        np.testing.assert_allclose(bank[..., a, :], np.rot90(kernel, a, axes=(0, 1)), atol=1e-7)
    # 17 angles: orientation 0 is the masked filter itself (channel a * 3 + f),
    # and the corners outside the inscribed disk are zero at every orientation.
    layer17 = RotConv(3, 5, n_angles=17)
    layer17.build((None, 9, 9, 2))
    bank17 = to_numpy(layer17.rotated_filter_bank())
    assert bank17.shape == (5, 5, 2, 3 * 17)
    masked17 = layer17.kernel.numpy() * disk_mask(5)[:, :, None, None]
    np.testing.assert_allclose(bank17.reshape(5, 5, 2, 17, 3)[..., 0, :], masked17, atol=1e-7)
    assert np.all(bank17[disk_mask(5) == 0] == 0)


def test_vector_filter_bank_rotates_the_components_too():
    layer = RotConv(2, 5, n_angles=4, mode="vector")
    layer.build((None, 9, 9, 6))
    kernel = (layer.kernel.numpy() * disk_mask(5)[:, :, None, None]).reshape(5, 5, 3, 2, 2)
    bank = to_numpy(layer.rotated_filter_bank()).reshape(5, 5, 3, 2, 4, 2)
    u, v = kernel[:, :, :, 0], kernel[:, :, :, 1]
    for a, (cos, sin) in enumerate([(1, 0), (0, 1), (-1, 0), (0, -1)]):
        ru, rv = np.rot90(u, a, axes=(0, 1)), np.rot90(v, a, axes=(0, 1))
        np.testing.assert_allclose(bank[:, :, :, 0, a], cos * ru - sin * rv, atol=1e-7)
        np.testing.assert_allclose(bank[:, :, :, 1, a], sin * ru + cos * rv, atol=1e-7)


def test_output_matches_an_explicit_loop_reference():
    x = _rng_input((2, 8, 8, 2))
    layer = RotConv(3, 3, n_angles=4, padding="valid", bias_initializer="random_normal")
    out = _pairs(layer(x))
    kernel = layer.kernel.numpy() * disk_mask(3)[:, :, None, None]
    responses = np.zeros((2, 6, 6, 3, 4))
    for a in range(4):
        rotated = np.rot90(kernel, a, axes=(0, 1))
        for i in range(3):
            for j in range(3):
                responses[..., a] += np.einsum("nhwc,cf->nhwf", x[:, i:i + 6, j:j + 6], rotated[i, j])
    winner = responses.argmax(-1)
    magnitude = np.maximum(responses.max(-1) + layer.bias.numpy(), 0)
    angle = winner * np.pi / 2
    np.testing.assert_allclose(out[..., 0], magnitude * np.round(np.cos(angle)), atol=1e-5)
    np.testing.assert_allclose(out[..., 1], magnitude * np.round(np.sin(angle)), atol=1e-5)


def _affine_transform_bank(kernel, n_angles, mode):
    """The filter bank as RotConv built it before its rotation became a precomputed
    matrix: one `affine_transform` of the disk-masked filters per call."""
    from keras import ops

    from keras_uap.layers.vector_ops import component_rotations, rotation_transforms

    k, _, channels, filters = kernel.shape
    mask = ops.convert_to_tensor(disk_mask(k))
    masked = ops.convert_to_tensor(kernel) * mask[:, :, None, None]
    images = ops.broadcast_to(ops.reshape(masked, (1, k, k, channels * filters)),
                              (n_angles, k, k, channels * filters))
    rotated = ops.image.affine_transform(images, ops.convert_to_tensor(rotation_transforms(n_angles, k)),
                                         interpolation="bilinear", fill_mode="constant", fill_value=0,
                                         data_format="channels_last")
    rotated = rotated * mask[None, :, :, None]
    if mode == "vector":
        rotated = ops.reshape(rotated, (n_angles, k, k, channels // 2, 2, filters))
        rotated = ops.einsum("apq,aijcqf->aijcpf", ops.convert_to_tensor(component_rotations(n_angles)), rotated)
    rotated = ops.reshape(rotated, (n_angles, k, k, channels, filters))
    return ops.reshape(ops.transpose(rotated, (1, 2, 3, 4, 0)), (k, k, channels, filters * n_angles))


def _max_argmax_pooling(layer, responses):
    """RotConv's former orientation pooling: max, argmax and take."""
    from keras import ops

    from keras_uap.layers.vector_ops import direction_table

    n, h, w, _ = responses.shape
    responses = ops.reshape(responses, (n, h, w, layer.filters, layer.n_angles))
    strength = ops.max(responses, axis=-1) + layer.bias
    directions = ops.take(ops.convert_to_tensor(direction_table(layer.n_angles)),
                          ops.argmax(responses, axis=-1), axis=0)
    return ops.reshape(ops.expand_dims(ops.relu(strength), -1) * directions, (n, h, w, 2 * layer.filters))


def _exact_kernel_gradient(kernel_shape, n_angles, mode, bank_gradient):
    """d loss / d kernel given d loss / d bank, through the EXACT derivative of the
    affine_transform bank (linear in the kernel: its transpose applied to the
    bank gradient, from the banks of all basis filters at once)."""
    k, _, channels, filters = kernel_shape
    basis = np.eye(k * k * channels, dtype="float32").reshape(k, k, channels, k * k * channels)
    basis_banks = to_numpy(_affine_transform_bank(basis, n_angles, mode)).reshape(
        k, k, channels, k * k * channels, n_angles)
    bank_gradient = to_numpy(bank_gradient).reshape(k, k, channels, filters, n_angles)
    return np.einsum("ijcba,ijcfa->bf", basis_banks, bank_gradient).reshape(kernel_shape)


def _relative_error(actual, expected):
    expected = to_numpy(expected)
    return float(np.max(np.abs(to_numpy(actual) - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("mode, channels, k, n_angles", [
    ("scalar", 1, 9, 17), ("scalar", 3, 5, 8), ("vector", 4, 7, 17), ("vector", 6, 3, 4)])
def test_precomputed_rotation_equals_the_affine_transform_bank(mode, channels, k, n_angles):
    keras.utils.set_random_seed(0)
    layer = RotConv(3, k, n_angles=n_angles, mode=mode)
    layer.build((None, 12, 12, channels))
    # RotConv's bank is orientation-major (channel a * F + f), the former one filter-major.
    bank = to_numpy(layer.rotated_filter_bank()).reshape(k, k, channels, n_angles, 3)
    bank = bank.swapaxes(-1, -2).reshape(k, k, channels, 3 * n_angles)
    assert _relative_error(bank, _affine_transform_bank(layer.kernel, n_angles, mode)) < 1e-6


@tensorflow_only
@pytest.mark.parametrize("mode, channels, k, n_angles, padding, size, strides", [
    ("scalar", 1, 9, 17, "same", 16, 1), ("scalar", 2, 5, 8, "valid", 11, 1), ("scalar", 1, 3, 4, "same", 8, 1),
    ("vector", 4, 7, 17, "same", 10, 1), ("vector", 6, 9, 17, "valid", 9, 1), ("vector", 4, 5, 4, "valid", 9, 1),
    # Strides, with odd and even input sizes (TF's "same" pads the extra pixel after).
    ("scalar", 1, 5, 8, "same", 11, 2), ("scalar", 2, 5, 8, "same", 12, (2, 3)),
    ("vector", 4, 5, 8, "valid", 12, 2), ("vector", 4, 3, 4, "same", 10, 3),
    # Kernel as large as the input: one product per orientation over the disk pixels.
    ("scalar", 2, 5, 8, "valid", 5, 1), ("scalar", 1, 9, 17, "valid", 9, 1), ("vector", 4, 7, 17, "valid", 7, 1)])
def test_outputs_and_gradients_match_the_affine_transform_and_argmax_implementation(
        mode, channels, k, n_angles, padding, size, strides):
    """Against RotConv as it was (bank by affine_transform per call, convolved with
    the input; max, argmax and take): outputs, gradients w.r.t. the input and the bias, and w.r.t. the kernel
    against the exact derivative of the former bank. (affine_transform's registered
    gradient is not its exact transpose: it differed from the exact kernel gradient
    by 6-13% of its largest entry for 17 angles; exact for multiples of 90 degrees.)
    The input has a zero border, so that all orientations tie there; with a
    positive bias those pixels pass gradients, split equally as by `max`."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    layer = RotConv(3, k, n_angles=n_angles, mode=mode, padding=padding, strides=strides, bias_initializer="ones")
    x = _rng_input((3, size, size, channels), seed=1)
    x[:, :, : k // 2 + 1] = 0.0  # whole receptive fields of zeros: exact ties
    x = tf.constant(x)
    layer.build(x.shape)
    upstream = tf.constant(_rng_input(layer.compute_output_shape(x.shape), seed=2))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        new = layer(x)
        new_loss = tf.reduce_sum(new * upstream)
        bank = _affine_transform_bank(layer.kernel, n_angles, mode)
        tape.watch(bank)
        old = _max_argmax_pooling(layer, keras.ops.conv(x, bank, strides=strides, padding=padding))
        old_loss = tf.reduce_sum(old * upstream)
    assert _relative_error(new, old) < 1e-5
    assert _relative_error(tape.gradient(new_loss, x), tape.gradient(old_loss, x)) < 1e-5
    assert _relative_error(tape.gradient(new_loss, layer.bias), tape.gradient(old_loss, layer.bias)) < 1e-5
    exact = _exact_kernel_gradient(layer.kernel.shape, n_angles, mode, tape.gradient(old_loss, bank))
    kernel_gradient = tape.gradient(new_loss, layer.kernel)
    assert _relative_error(kernel_gradient, exact) < 1e-5
    if n_angles % 4 == 0 and n_angles <= 4:  # rotations by multiples of 90 degrees: permutations
        assert _relative_error(kernel_gradient, tape.gradient(old_loss, layer.kernel)) < 1e-5
    assert to_numpy(new).any()


@pytest.mark.parametrize("mode, channels, k, n_angles, padding, size, strides", [
    ("scalar", 1, 9, 17, "same", 12, 1), ("scalar", 2, 5, 8, "same", 11, 2), ("vector", 4, 7, 17, "valid", 7, 1),
    ("vector", 4, 5, 4, "valid", 9, 1)])
def test_outputs_and_input_gradients_match_the_former_implementation_on_every_backend(
        mode, channels, k, n_angles, padding, size, strides):
    """The layer as the backend runs it (TensorFlow: its fast path; others: one
    convolution and a max/arg-max) against the bank by affine_transform, convolved,
    and pooled by max, argmax and take; zero border columns give exact ties."""
    keras.utils.set_random_seed(0)
    layer = RotConv(3, k, n_angles=n_angles, mode=mode, padding=padding, strides=strides, bias_initializer="ones")
    x = _rng_input((3, size, size, channels), seed=1)
    x[:, :, : k // 2 + 1] = 0.0
    layer.build(x.shape)
    upstream = keras.ops.convert_to_tensor(_rng_input(layer.compute_output_shape(x.shape), seed=2))

    def former(v):
        bank = _affine_transform_bank(layer.kernel, n_angles, mode)
        return _max_argmax_pooling(layer, keras.ops.conv(v, bank, strides=strides, padding=padding))

    assert _relative_error(to_numpy(layer(x)), to_numpy(former(x))) < 1e-5
    ours = input_gradient(lambda v: layer(v) * upstream, x)
    assert _relative_error(ours, input_gradient(lambda v: former(v) * upstream, x)) < 1e-5


@tensorflow_only
@pytest.mark.parametrize("mode, channels, padding, size", [
    ("scalar", 1, "same", 16), ("vector", 4, "same", 10), ("vector", 6, "valid", 9), ("vector", 12, "same", 10),
    ("scalar", 8, "valid", 12)])
def test_the_tensorflow_path_equals_the_portable_convolution(mode, channels, padding, size):
    """Same numbers to float rounding whichever path RotConv takes (outputs and input gradients)."""
    keras.utils.set_random_seed(1)
    layer = RotConv(4, 9, mode=mode, padding=padding, bias_initializer="random_normal")
    x = _rng_input((5, size, size, channels), seed=6)
    assert _relative_error(to_numpy(layer(x)), to_numpy(layer.pooled_field_by_convolution(x))) < 1e-5
    weights = keras.ops.convert_to_tensor(_rng_input(layer.compute_output_shape(x.shape), seed=7))
    fast = input_gradient(lambda v: layer(v) * weights, x)
    portable = input_gradient(lambda v: layer.pooled_field_by_convolution(v) * weights, x)
    assert _relative_error(fast, portable) < 1e-5


def test_zero_input_picks_the_first_orientation_everywhere():
    """All 17 responses tie at 0: the first orientation (angle 0) wins, as for argmax."""
    layer = RotConv(3, 5, bias_initializer="ones")
    field = _pairs(layer(np.zeros((2, 9, 9, 1), "float32")))
    np.testing.assert_array_equal(field, np.broadcast_to([1.0, 0.0], field.shape))


@tensorflow_only
def test_the_packed_key_reduction_is_max_and_first_argmax():
    """Negative and positive responses, exact ties, and -0.0 against +0.0 (equal, as for `max`)."""
    import tensorflow as tf

    from keras_uap.layers.orientation_pooling import _strongest_orientation

    rng = np.random.default_rng(7)
    responses = rng.standard_normal((9, 5, 40)).astype("float32")
    responses[:, 0] = np.round(responses[:, 0])  # many ties
    responses[:, 1] = -np.abs(responses[:, 1])  # all negative
    responses[:, 2] = 0.0
    responses[::2, 2] = -0.0
    responses[:, 3] = np.float32(-3.0e38)
    strength, winner = _strongest_orientation(tf.constant(responses))
    np.testing.assert_array_equal(to_numpy(strength), responses.max(axis=0))
    np.testing.assert_array_equal(to_numpy(winner), responses.argmax(axis=0))
    # A convolution's layout: the orientations on the middle axis.
    strength, winner = _strongest_orientation(tf.constant(responses.transpose(1, 0, 2)), axis=1)
    np.testing.assert_array_equal(to_numpy(strength), responses.max(axis=0))
    np.testing.assert_array_equal(to_numpy(winner), responses.argmax(axis=0))


@tensorflow_only
@pytest.mark.parametrize("layout", ["afm", "amf", "maf"])
def test_the_pooling_is_the_same_in_every_layout(layout):
    """Field, and gradients with respect to the responses and the bias (ties split), whatever the axis order."""
    import tensorflow as tf

    from keras_uap.layers.orientation_pooling import orientation_pooled_field

    rng = np.random.default_rng(8)
    responses = np.round(rng.standard_normal((7, 5, 30)), 1).astype("float32")  # (a, f, m), with ties
    bias = tf.constant(rng.standard_normal(5).astype("float32"))
    upstream = tf.constant(rng.standard_normal((30, 5, 2)).astype("float32"))

    def pooled(order):
        laid_out = tf.constant(responses.transpose(["afm".index(axis) for axis in order]))
        with tf.GradientTape() as tape:
            tape.watch([laid_out, bias])
            field = orientation_pooled_field(laid_out, bias, order)
            loss = tf.reduce_sum(field * upstream)
        grads = tape.gradient(loss, [laid_out, bias])
        back = [order.index(axis) for axis in "afm"]
        return to_numpy(field), to_numpy(tf.transpose(grads[0], back)), to_numpy(grads[1])

    for ours, reference in zip(pooled(layout), pooled("afm")):
        np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="layout"):
        orientation_pooled_field(tf.constant(responses), bias, "afx")


@tensorflow_only
@pytest.mark.parametrize("channels, size, padding, layout", [
    (1, 28, "same", "afm"), (4, 14, "same", "afm"), (12, 14, "same", "maf"), (32, 9, "valid", "amf"),
    (12, 9, "valid", "amf")])
def test_the_tensorflow_path_picks_its_product_by_shape(channels, size, padding, layout):
    """RotEqNet's three layers: window columns (few input channels),
    convolution (8 and more), one product per orientation (kernel = input)."""
    import tensorflow as tf

    from keras_uap.layers.rot_conv_tensorflow import _layout

    layer = RotConv(3, 9, n_angles=5, mode="vector" if channels % 2 == 0 else "scalar", padding=padding)
    x = tf.zeros((2, size, size, channels))
    layer.build(x.shape)
    assert _layout(layer, x) == layout


@tensorflow_only
def test_padded_batch_sizes():
    import tensorflow as tf

    from keras_uap.layers.rot_conv_tensorflow import padded_batch

    padded = [int(padded_batch(tf.constant(b))) for b in range(1100)]
    assert [padded[b] for b in (0, 1, 2, 4, 5, 16, 17, 64, 65, 128, 129, 300, 1000)] == [
        0, 1, 4, 4, 16, 16, 64, 64, 128, 128, 256, 384, 1024]
    assert all(b <= p <= 4 * b for b, p in enumerate(padded[:129]))
    assert all(b <= p < b + 128 for b, p in enumerate(padded[129:], 129))
    # What XLA compiles for DeepFool's chunks of 1 to 128 inputs: 5 shapes, not 128.
    assert len(set(padded[1:129])) == 5


@tensorflow_only
@pytest.mark.parametrize("vector, channels, size, height, width, strides, padding", [
    (False, 1, 9, 28, 28, 1, "same"), (False, 3, 5, 12, 11, (2, 3), "same"), (False, 2, 7, 13, 9, 2, "valid"),
    (True, 4, 5, 10, 10, 1, "same"), (True, 6, 3, 9, 8, (3, 2), "valid"), (True, 4, 9, 9, 9, 1, "valid")])
def test_disk_window_columns_match_extract_patches(vector, channels, size, height, width, strides, padding):
    """Every window's disk pixels against TF's own `extract_patches` (same
    windows, same padding), in the documented row and column order."""
    import tensorflow as tf

    from keras_uap.layers.disk_windows import disk_pixels, disk_window_columns

    x = _rng_input((3, height, width, channels), seed=5)
    stride_pair = (strides, strides) if isinstance(strides, int) else strides
    columns = to_numpy(disk_window_columns(x, size, stride_pair, padding, vector=vector))
    patches = tf.image.extract_patches(x, [1, size, size, 1], [1, *stride_pair, 1], [1, 1, 1, 1], padding.upper())
    patches = to_numpy(patches).reshape(-1, size * size, channels)[:, disk_pixels(size)]  # (windows, D, C)
    if vector:  # channel 2c + p -> row (d, p, c)
        patches = patches.reshape(len(patches), -1, channels // 2, 2).swapaxes(-1, -2)
    np.testing.assert_array_equal(columns, patches.reshape(len(patches), -1).T)


@pytest.mark.parametrize("mode, channels, padding, size", [
    ("scalar", 1, "same", 12), ("vector", 4, "same", 10), ("vector", 4, "valid", 7)])
def test_a_batch_alone_equals_its_rows_in_a_larger_batch(mode, channels, padding, size):
    """RotConv pads each batch with zero images to one of a few sizes (XLA
    compiles once per shape); the padding must not leak into the rows."""
    layer = RotConv(3, 7, n_angles=8, mode=mode, padding=padding, bias_initializer="random_normal")
    x = _rng_input((20, size, size, channels), seed=4)
    whole = to_numpy(layer(x))
    for batch in (0, 1, 3, 5, 16, 17):
        alone = to_numpy(layer(x[:batch]))
        assert alone.shape == (batch,) + whole.shape[1:]
        np.testing.assert_allclose(alone, whole[:batch], rtol=0, atol=1e-6 * np.abs(whole).max())


@tensorflow_only
@pytest.mark.parametrize("mode, channels", [("scalar", 3), ("vector", 8)])
def test_the_whole_input_product_agrees_with_the_window_columns(mode, channels):
    import tensorflow as tf

    from keras_uap.layers.rot_conv_tensorflow import _covers_whole_input

    keras.utils.set_random_seed(0)
    layer = RotConv(5, 9, mode=mode, padding="valid", bias_initializer="random_normal")
    x = tf.constant(_rng_input((4, 9, 9, channels), seed=3))
    assert _covers_whole_input(layer, x)
    # Height and width unknown when traced: the window-columns path.
    spec = tf.TensorSpec((None, None, None, channels), tf.float32)

    def loss_and_kernel_gradient(inputs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(inputs) * tf.range(10, dtype=tf.float32))
        return loss, tape.gradient(loss, layer.kernel)

    product = loss_and_kernel_gradient(x)
    windows = tf.function(loss_and_kernel_gradient, input_signature=[spec])(x)
    assert not _covers_whole_input(layer, spec)
    assert _relative_error(product[0], windows[0]) < 1e-5
    assert _relative_error(product[1], windows[1]) < 1e-5
    assert _relative_error(layer(x), tf.function(layer, input_signature=[spec])(x)) < 1e-5


@pytest.mark.parametrize("n_angles", [4, 8])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_exact_equivariance_when_90_degrees_is_a_sampled_angle(n_angles, padding):
    keras.utils.set_random_seed(0)
    x = _rng_input((2, 15, 15, 2))
    scalar = RotConv(4, 5, n_angles=n_angles, padding=padding, bias_initializer="random_normal")
    assert _relative_exact_error(scalar, x, "planar", "vector") < EXACT_RTOL
    magnitudes = keras.Sequential([scalar, Vector2Magnitude()])
    assert _relative_exact_error(magnitudes, x, "planar", "planar") < EXACT_RTOL
    vector = RotConv(3, 5, n_angles=n_angles, mode="vector", padding=padding)
    assert _relative_exact_error(vector, _rng_input((2, 15, 15, 8)), "vector", "vector") < EXACT_RTOL
    stack = keras.Sequential([scalar, vector])
    assert _relative_exact_error(stack, x, "planar", "vector") < EXACT_RTOL


def test_the_equivariance_check_detects_unrotated_vectors():
    # Rotating positions but not the vectors (the planar action) must fail badly.
    layer = RotConv(4, 5, n_angles=4)
    x = _rng_input((1, 11, 11, 1))
    errors = check_equivariance(layer, x, "planar", "planar")
    assert max(errors.values()) > 0.5 * float(np.abs(to_numpy(layer(x))).max())


def test_17_angles_random_filters_within_the_discretisation_tolerance():
    keras.utils.set_random_seed(0)
    x = _smooth_input((2, 21, 21, 1))
    errors = _rotation_errors(RotConv(4, 7, n_angles=17), x, "planar")
    field, magnitude, within_step, wrong = errors.T
    assert magnitude.max() < 0.25, errors
    assert within_step.min() >= 0.6, errors
    assert wrong.min() > 1.2, errors


def test_17_angles_smooth_filters_within_the_discretisation_tolerance():
    x = _smooth_input((2, 21, 21, 1))
    layer = RotConv(3, 7, n_angles=17, use_bias=False)
    layer.build(x.shape)
    layer.kernel.assign(np.stack([_gaussian_derivative(7, s) for s in (1.0, 1.5, 2.0)], -1)[:, :, None, :])
    errors = _rotation_errors(layer, x, "planar")
    field, magnitude, within_step, wrong = errors.T
    assert field.max() < 0.3, errors
    assert magnitude.max() < 0.1, errors
    assert within_step.min() >= 0.85, errors
    assert wrong.min() > 1.2, errors


def test_17_angles_vector_mode_within_the_discretisation_tolerance():
    # Smooth scalar layer, then a vector layer whose filter is a Gaussian times
    # a fixed vector per (input, output) map, so its orientation response is
    # a single cosine lobe. Tolerances from 8 seeds (module docstring).
    keras.utils.set_random_seed(0)
    x = _smooth_input((2, 21, 21, 1))
    first = RotConv(3, 7, n_angles=17, use_bias=False)
    first.build(x.shape)
    first.kernel.assign(np.stack([_gaussian_derivative(7, s) for s in (1.0, 1.5, 2.0)], -1)[:, :, None, :])
    second = RotConv(2, 5, n_angles=17, mode="vector", use_bias=False)
    second.build((None, 21, 21, 6))
    mixing = np.random.default_rng(0).standard_normal((1, 1, 6, 2)).astype("float32")
    second.kernel.assign(_gaussian(5, 1.0)[:, :, None, None] * mixing)
    errors = _rotation_errors(keras.Sequential([first, second]), x, "planar")
    field, magnitude, within_step, wrong = errors.T
    assert field.max() < 0.4, errors
    assert magnitude.max() < 0.25, errors
    assert within_step.min() >= 0.75, errors
    assert wrong.min() > 1.2, errors


# ---------------------------------------------------------------- VectorMaxPool


def _reference_vector_max_pool(field, pool, stride):
    pairs = _pairs(field)
    n, h, w, f, _ = pairs.shape
    oh, ow = (h - pool) // stride + 1, (w - pool) // stride + 1
    out = np.zeros((n, oh, ow, f, 2), "float32")
    for i in range(oh):
        for j in range(ow):
            window = pairs[:, i * stride:i * stride + pool, j * stride:j * stride + pool].reshape(n, -1, f, 2)
            best = np.argmax((window**2).sum(-1), axis=1)  # (n, f)
            out[:, i, j] = np.take_along_axis(window, best[:, None, :, None], axis=1)[:, 0]
    return out.reshape(n, oh, ow, 2 * f)


@pytest.mark.parametrize("pool,stride", [(2, 2), (3, 1), (3, 2)])
def test_vector_max_pool_matches_reference_and_is_equivariant(pool, stride):
    field = _rng_input((2, 9, 9, 6))
    layer = VectorMaxPool(pool, strides=stride)
    np.testing.assert_array_equal(to_numpy(layer(field)), _reference_vector_max_pool(field, pool, stride))
    even = _rng_input((2, 10, 10, 6)) if pool == 2 else field  # windows tile the square symmetrically
    assert max(check_equivariance(layer, even, "vector", "vector").values()) == 0.0


def test_vector_max_pool_same_padding_keeps_the_border_vectors():
    field = _rng_input((1, 5, 5, 4))
    out = to_numpy(VectorMaxPool(2, padding="same")(field))
    assert out.shape == (1, 3, 3, 4)
    # The last row/column windows only hold real vectors (zero padding never wins).
    np.testing.assert_array_equal(out[:, 2, 2], field[:, 4, 4])


# ---------------------------------------------------------------- VectorBatchNorm


@pytest.mark.parametrize("centered", [False, True])
def test_vector_batch_norm_scales_magnitudes_and_keeps_directions(centered):
    field = 3.0 * _rng_input((4, 6, 6, 8)) + 1.0
    layer = VectorBatchNorm(momentum=0.5, centered=centered)
    out = to_numpy(layer(field, training=True))
    p_in, p_out = _pairs(field), _pairs(out)
    scale = np.linalg.norm(p_out, axis=-1) / np.linalg.norm(p_in, axis=-1)
    # One positive scale per map: directions kept.
    np.testing.assert_allclose(scale, np.broadcast_to(scale[:1, :1, :1], scale.shape), rtol=1e-5)
    magnitude = np.linalg.norm(p_out, axis=-1)
    statistic = magnitude.std(axis=(0, 1, 2)) if centered else np.sqrt((magnitude**2).mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(statistic, 1.0, rtol=1e-3)
    # Running variance: 0.5 * 1 + 0.5 * batch variance; inference uses it.
    m_in = np.linalg.norm(p_in, axis=-1)
    batch = m_in.var(axis=(0, 1, 2)) if centered else (m_in**2).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.5 + 0.5 * batch, rtol=1e-5)
    inferred = _pairs(layer(field, training=False))
    np.testing.assert_allclose(inferred, p_in / np.sqrt(0.5 + 0.5 * batch + 1e-5)[:, None], rtol=1e-5)


def test_vector_batch_norm_is_equivariant():
    field = _rng_input((2, 8, 8, 6))
    for training in (True, False):
        layer = VectorBatchNorm(centered=True)
        fn = lambda v, layer=layer: layer(v, training=training)  # noqa: E731
        assert max(check_equivariance(fn, field, "vector", "vector").values()) < 1e-5


# ---------------------------------------------------------------- Vector2Magnitude


def test_vector_to_magnitude_is_invariant_with_finite_gradients():
    field = _rng_input((2, 7, 7, 6))
    field[0, 0, 0, :2] = 0.0  # a zero vector: the plain sqrt gradient would be NaN
    layer = Vector2Magnitude()
    out = to_numpy(layer(field))
    np.testing.assert_allclose(out, np.linalg.norm(_pairs(field), axis=-1), rtol=1e-6)
    assert max(check_equivariance(layer, field, "vector", "planar").values()) < 1e-6
    grad = input_gradient(layer, field)
    assert np.all(np.isfinite(grad)) and np.all(grad[0, 0, 0, :2] == 0)


# ---------------------------------------------------------------- shapes, config, errors, saving


@pytest.mark.parametrize("layer,shape,expected", [
    (RotConv(6, 9), (2, 28, 28, 1), (2, 28, 28, 12)),
    (RotConv(4, 5, n_angles=8, padding="valid", strides=2), (2, 15, 15, 3), (2, 6, 6, 8)),
    (RotConv(4, (5, 5), mode="vector", use_bias=False), (2, 9, 9, 12), (2, 9, 9, 8)),
    (VectorMaxPool(2), (2, 9, 9, 12), (2, 4, 4, 12)),
    (VectorMaxPool((3, 3), strides=1, padding="same"), (2, 9, 9, 12), (2, 9, 9, 12)),
    (VectorBatchNorm(centered=True, scale=False), (2, 4, 4, 12), (2, 4, 4, 12)),
    (Vector2Magnitude(), (2, 4, 4, 12), (2, 4, 4, 6)),
])
def test_shapes_and_config_round_trip(layer, shape, expected):
    out = layer(np.zeros(shape, "float32"))
    assert tuple(out.shape) == expected
    assert tuple(layer.compute_output_shape(shape)) == expected
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_errors_are_pinned():
    with pytest.raises(ValueError, match="`filters` must be a positive int. Received: filters=-3"):
        RotConv(-3, 3)
    with pytest.raises(ValueError, match=r"square \(k, k\) tuple.*Received: kernel_size=\(3, 5\)"):
        RotConv(4, (3, 5))
    with pytest.raises(ValueError, match="`n_angles` must be a positive int. Received: n_angles=0"):
        RotConv(4, 3, n_angles=0)
    with pytest.raises(ValueError, match="Received: mode=tensor"):
        RotConv(4, 3, mode="tensor")
    with pytest.raises(ValueError, match="Received: padding=causal"):
        RotConv(4, 3, padding="causal")
    with pytest.raises(ValueError, match=r"channel axis is even.*Received: input_shape=\(1, 8, 8, 3\)"):
        RotConv(4, 3, mode="vector")(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="`pool_size` must be a positive int or pair. Received: pool_size=\\(0, 0\\)"):
        VectorMaxPool(0)
    with pytest.raises(ValueError, match="Received: padding=full"):
        VectorMaxPool(2, padding="full")
    with pytest.raises(ValueError, match="VectorMaxPool expects a vector field"):
        VectorMaxPool(2)(np.zeros((1, 4, 4, 5), "float32"))
    with pytest.raises(ValueError, match=r"`momentum` must be in \[0, 1\). Received: momentum=1.5"):
        VectorBatchNorm(momentum=1.5)
    with pytest.raises(ValueError, match="`epsilon` must be positive. Received: epsilon=0.0"):
        VectorBatchNorm(epsilon=0)
    with pytest.raises(ValueError, match="VectorBatchNorm expects a vector field"):
        VectorBatchNorm()(np.zeros((1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match="Vector2Magnitude expects a vector field"):
        Vector2Magnitude()(np.zeros((1, 4, 4, 3), "float32"))
    for bad in (True, 2.0, "4"):
        with pytest.raises(ValueError, match=f"`filters` must be a positive int. Received: filters={bad}"):
            RotConv(bad, 3)
    with pytest.raises(ValueError, match="Received: kernel_size=9.5"):
        RotConv(4, 9.5)
    with pytest.raises(ValueError, match=r"`strides` must be a positive int or pair. Received: strides=\(1, 0\)"):
        RotConv(4, 3, strides=(1, 0))
    with pytest.raises(ValueError, match="Received: pool_size=2.5"):
        VectorMaxPool(2.5)
    for bad in (float("nan"), float("inf"), -1e-3):
        with pytest.raises(ValueError, match=f"`epsilon` must be positive. Received: epsilon={bad}"):
            VectorBatchNorm(epsilon=bad)


@pytest.mark.parametrize("layer,shape", [
    (RotConv(4, 9, padding="valid"), (2, 5, 12, 1)),
    (RotConv(4, 9, mode="vector", padding="valid"), (2, 12, 8, 6)),
    (VectorMaxPool(4), (2, 2, 2, 6)),
    (VectorMaxPool((2, 3), strides=1), (2, 4, 2, 6)),
])
def test_a_valid_window_larger_than_the_input_is_an_error_not_an_empty_map(layer, shape):
    with pytest.raises(ValueError, match=r"padding='valid' needs inputs of at least \d+x\d+ pixels"):
        layer.compute_output_shape(shape)
    with pytest.raises(ValueError, match=r"padding='valid' needs inputs of at least \d+x\d+ pixels"):
        layer(np.zeros(shape, "float32"))


def test_same_padding_takes_inputs_smaller_than_the_window():
    assert tuple(VectorMaxPool(4, padding="same")(np.ones((1, 2, 2, 6), "float32")).shape) == (1, 1, 1, 6)
    assert tuple(RotConv(2, 9, n_angles=4)(np.ones((1, 5, 5, 1), "float32")).shape) == (1, 5, 5, 4)


def test_numpy_integers_are_accepted_and_configs_hold_python_ints():
    rot = RotConv(np.int64(4), np.int32(5), n_angles=np.int64(8), strides=np.int64(1), mode="vector")
    pool = VectorMaxPool(np.int64(2), strides=(np.int32(2), 2))
    assert tuple(pool(rot(np.zeros((1, 8, 8, 6), "float32"))).shape) == (1, 4, 4, 8)
    for config in (rot.get_config(), pool.get_config()):
        json.dumps(config)  # NumPy integers would not serialise
    assert (rot.filters, rot.kernel_size, rot.n_angles, rot.strides) == (4, (5, 5), 8, (1, 1))
    assert all(type(v) is int for v in rot.kernel_size + rot.strides + pool.pool_size + pool.strides)


@pytest.mark.parametrize("module", [rot_conv, vector_max_pool, vector_batch_norm, vector_to_magnitude])
def test_docstring_examples_run_as_shown(module):
    results = doctest.testmod(module, extraglobs={"np": np}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert results.attempted > 0 and results.failed == 0


def _roteqnet_like_model():
    inputs = keras.Input((12, 12, 1))
    h = RotConv(4, 5, n_angles=8)(inputs)
    h = VectorBatchNorm(momentum=0.5)(h)
    h = VectorMaxPool(2)(h)
    h = RotConv(4, 3, n_angles=8, mode="vector")(h)
    h = Vector2Magnitude()(h)
    h = keras.layers.GlobalMaxPooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(3)(h))


def test_training_lowers_the_loss_and_keras_file_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    model = _roteqnet_like_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = _smooth_input((12, 12, 12, 1), sigma=1.0)
    y = np.arange(12) % 3
    # Training-mode losses (batch statistics in VectorBatchNorm), each before its step;
    # `fit` with Keras' default jit_compile, as a user on any backend would train.
    losses = model.fit(x, y, epochs=6, batch_size=12, shuffle=False, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0], losses
    assert not np.allclose(model.layers[2].moving_variance.numpy(), 1.0)  # updated in training
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(model(x)))
    assert [type(layer).__name__ for layer in loaded.layers[1:6]] == [
        "RotConv", "VectorBatchNorm", "VectorMaxPool", "RotConv", "Vector2Magnitude"]
