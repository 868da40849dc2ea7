"""p4m group convolutions, group pooling on p4m and GroupBatchNormalization:
agreement with GrouPy's filter transform, exact equivariance for all 8
elements, contract and serialization. Backend-neutral (TensorFlow, JAX)."""

import numpy as np
import pytest

import keras
from keras_uap.layers import (
    GroupBatchNormalization,
    GroupPooling,
    GroupSpatialMaxPooling2D,
    P4ConvZ2,
    P4MConvP4M,
    P4MConvZ2,
    check_equivariance,
)
from keras_uap.layers.p4_ops import expand_group_kernel
from layer_backends import to_numpy

ATOL = 1e-5


def _rng(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


# --- An independent reconstruction of GrouPy's index arrays (groupy/gconv/make_gconv_indices.py) ---
# GrouPy codes an element of p4m as integers (m, r, u, v) with the homogeneous matrix
# T(u, v) M(m) R(r), M = diag((-1)^m, 1); its filters are functions on a grid of (u, v)
# (u the row offset, v the column offset from the centre) and, on p4m, on the element
# index t = 4 m + r. The filter for output element g is f(g^-1 h) at every sample point h.
# Here that is recomputed with integer 3x3 matrices, from those definitions alone.


def _groupy_hmat(m, r, u=0, v=0):
    c, s = [1, 0, -1, 0][r % 4], [0, 1, 0, -1][r % 4]
    sign = (-1) ** m
    return np.array([[c * sign, -s * sign, u], [s, c, v], [0, 0, 1]])


def _groupy_int(hmat):
    neg_det = hmat[1, 0] * hmat[0, 1] - hmat[0, 0] * hmat[1, 1]
    m = (neg_det + 1) // 2
    r = int(round(np.arctan2(hmat[1, 0], hmat[1, 1]) / np.pi * 2)) % 4
    return m, r, hmat[0, 2], hmat[1, 2]


def _groupy_indices(ksize, group, input_on_group):
    """GrouPy's `make_{c4,d4}_{z2,p4,p4m}_indices(ksize)`, flattened by its `flatten_indices`:
    (nto, nti, n, n) indices into its filter viewed as (n * n * nti) rows."""
    half = ksize // 2
    out_elements = [(m, r) for m in range(2 if group == "p4m" else 1) for r in range(4)]
    in_elements = out_elements if input_on_group else [None]
    nti = len(in_elements)
    flat = np.zeros((len(out_elements), nti, ksize, ksize), dtype=int)
    for a, (gm, gr) in enumerate(out_elements):
        g_inv = np.round(np.linalg.inv(_groupy_hmat(gm, gr))).astype(int)
        for b, h in enumerate(in_elements):
            for i in range(ksize):
                for j in range(ksize):
                    hm, hr = h if h is not None else (0, 0)
                    m, r, u, v = _groupy_int(g_inv @ _groupy_hmat(hm, hr, i - half, j - half))
                    t = 4 * m + r if input_on_group else 0
                    flat[a, b, i, j] = (u + half) * ksize * nti + (v + half) * nti + t
    return flat


def _groupy_transform_filter(w, flat, n_in, n_out):
    """GrouPy's `transform_filter_2d_nhwc` in NumPy: w (n, n, ni * nti, no) ->
    (n, n, ni * nti, no * nto), input channel i * nti + t, output o * nto + g."""
    nto, nti, n, _ = flat.shape
    w_flat = w.reshape(n * n * nti, n_in, n_out)
    transformed = w_flat[flat]  # (nto, nti, n, n, ni, no)
    return transformed.transpose(2, 3, 4, 1, 5, 0).reshape(n, n, n_in * nti, n_out * nto)


@pytest.mark.parametrize("group, input_on_group, n_in, ksize", [
    ("p4m", False, 1, 3), ("p4m", False, 3, 5), ("p4m", True, 1, 3), ("p4m", True, 2, 5),
    ("p4", False, 2, 3), ("p4", True, 2, 5)])
def test_the_filter_bank_agrees_with_groupys_transform(group, input_on_group, n_in, ksize):
    """GrouPy reads its raw filter's input channels as t * ni + i (its reshape to
    (n * n * nti, ni, no)) but lays out the transformed bank as i * nti + t; this
    package uses i * nti + t for both, so GrouPy's raw filter is our kernel with
    its input channels reordered."""
    nti = (8 if group == "p4m" else 4) if input_on_group else 1
    n_out = 3
    kernel = _rng((ksize, ksize, n_in * nti, n_out), seed=ksize + n_in)
    groupy_raw = kernel.reshape(ksize, ksize, n_in, nti, n_out).transpose(0, 1, 3, 2, 4)
    groupy_raw = groupy_raw.reshape(ksize, ksize, nti * n_in, n_out)
    expected = _groupy_transform_filter(groupy_raw, _groupy_indices(ksize, group, input_on_group), n_in, n_out)
    ours = to_numpy(expand_group_kernel(keras.ops.convert_to_tensor(kernel), group, input_on_group))
    np.testing.assert_array_equal(ours, expected)


def test_the_reconstruction_is_not_trivially_the_identity():
    """The 8 banks differ from each other (a transform that ignored the element would pass nothing)."""
    bank = _groupy_transform_filter(_rng((3, 3, 1, 1)), _groupy_indices(3, "p4m", False), 1, 1)
    copies = bank.reshape(9, 8).T
    assert len({tuple(np.round(c, 6)) for c in copies}) == 8


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_p4mconvz2_is_equivariant_for_all_8_elements(padding):
    errors = check_equivariance(P4MConvZ2(4, 3, padding=padding), _rng((2, 11, 11, 2)), "planar", "p4m", "p4m")
    assert len(errors) == 8 and max(errors.values()) < ATOL


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_p4mconvp4m_is_equivariant_for_all_8_elements(padding):
    errors = check_equivariance(P4MConvP4M(3, 3, padding=padding), _rng((2, 10, 10, 16)), "p4m", "p4m", "p4m")
    assert len(errors) == 8 and max(errors.values()) < ATOL


def _p4m_stack():
    keras.utils.set_random_seed(1)
    return keras.Sequential([
        keras.Input((14, 14, 1)),
        P4MConvZ2(3, 3, activation="relu"),
        GroupBatchNormalization("p4m"),
        P4MConvP4M(3, 3, padding="same", activation="relu"),
        GroupSpatialMaxPooling2D(2, group="p4m"),
    ])


def test_a_p4m_stack_with_batch_norm_and_pooling_is_equivariant_and_pools_to_invariants():
    x = _rng((2, 14, 14, 1))
    stack = _p4m_stack()
    assert max(check_equivariance(stack, x, "planar", "p4m", "p4m").values()) < ATOL
    pooled = keras.Sequential([stack, GroupPooling("max", group="p4m")])
    assert max(check_equivariance(pooled, x, "planar", "planar", "p4m").values()) < ATOL


def test_the_check_detects_a_p4_layer_that_is_not_mirror_equivariant():
    """P4ConvZ2's copies are rotations only: lifted to a p4m-sized map, mirror images break it."""
    layer = P4ConvZ2(2, 3)
    as_p4m = lambda x: np.concatenate([to_numpy(layer(x))] * 2, axis=-1)  # noqa: E731
    errors = check_equivariance(as_p4m, _rng((1, 9, 9, 1)), "planar", "p4m", "p4m")
    assert max(errors.values()) > 0.1


# --- GroupBatchNormalization ---

@pytest.mark.parametrize("group, order", [("p4", 4), ("p4m", 8)])
def test_group_batch_norm_matches_a_numpy_reference_and_updates_its_running_statistics(group, order):
    x = _rng((3, 5, 5, 2 * order), seed=2) * 3.0 + 1.0
    layer = GroupBatchNormalization(group, momentum=0.5, gamma_initializer="random_normal",
                                    beta_initializer="random_normal")
    out = to_numpy(layer(x, training=True))
    grouped = x.reshape(3, 5, 5, 2, order).astype(np.float64)
    mean, var = grouped.mean(axis=(0, 1, 2, 4)), grouped.var(axis=(0, 1, 2, 4))
    gamma, beta = to_numpy(layer.gamma), to_numpy(layer.beta)
    expected = (grouped - mean[:, None]) / np.sqrt(var[:, None] + 1e-3) * gamma[:, None] + beta[:, None]
    np.testing.assert_allclose(out, expected.reshape(x.shape), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(to_numpy(layer.moving_mean), 0.5 * mean, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(layer.moving_variance), 0.5 + 0.5 * var, rtol=1e-5)
    inference = to_numpy(layer(x, training=False))
    moving_mean, moving_var = 0.5 * mean, 0.5 + 0.5 * var
    expected = (grouped - moving_mean[:, None]) / np.sqrt(moving_var[:, None] + 1e-3) * gamma[:, None] + beta[:, None]
    np.testing.assert_allclose(inference, expected.reshape(x.shape), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("group, kind", [("p4", "p4"), ("p4m", "p4m")])
def test_group_batch_norm_is_equivariant_in_training_and_inference(group, kind, training):
    order = 8 if group == "p4m" else 4
    layer = GroupBatchNormalization(group, momentum=0.0, gamma_initializer="random_normal",
                                    beta_initializer="random_normal")
    x = _rng((2, 6, 6, 3 * order), seed=3) + np.arange(3 * order, dtype="float32")
    layer(x, training=True)  # running statistics from a batch: not their initial 0 and 1
    fn = lambda v: to_numpy(layer(v, training=training))  # noqa: E731
    errors = check_equivariance(fn, x, kind, kind, group)
    assert max(errors.values()) < 1e-4 * np.abs(fn(x)).max()


def test_per_channel_batch_norm_would_not_be_equivariant():
    """What sharing the statistics buys: Keras' BatchNormalization keeps running
    statistics per channel, which a rotation does not permute with the channels."""
    x = _rng((2, 6, 6, 8), seed=3) + np.arange(8, dtype="float32")
    layer = keras.layers.BatchNormalization(momentum=0.0)
    layer(x, training=True)
    fn = lambda v: to_numpy(layer(v, training=False))  # noqa: E731
    assert max(check_equivariance(fn, x, "p4", "p4").values()) > 0.1


# --- Contract ---

@pytest.mark.parametrize("layer, shape, expected", [
    (P4MConvZ2(3, 3), (2, 9, 9, 2), (2, 7, 7, 24)),
    (P4MConvP4M(2, 3, padding="same", strides=2), (2, 9, 9, 16), (2, 5, 5, 16)),
    (GroupPooling("mean", group="p4m"), (2, 4, 4, 16), (2, 4, 4, 2)),
    (GroupSpatialMaxPooling2D(2, group="p4m"), (2, 6, 6, 16), (2, 3, 3, 16)),
    (GroupBatchNormalization("p4m"), (2, 3, 3, 16), (2, 3, 3, 16)),
])
def test_shapes_and_config_round_trip(layer, shape, expected):
    out = layer(_rng(shape))
    assert tuple(out.shape) == expected == tuple(layer.compute_output_shape(shape))
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_errors_are_pinned():
    with pytest.raises(ValueError, match=r"`group` must be one of \('p4', 'p4m'\). Received: group=p6"):
        GroupPooling("max", group="p6")
    with pytest.raises(ValueError, match="P4MConvP4M expects the channel axis to be a multiple of 8"):
        P4MConvP4M(2, 3).build((None, 9, 9, 12))
    with pytest.raises(ValueError, match="GroupBatchNormalization expects a p4m feature map"):
        GroupBatchNormalization("p4m").build((None, 9, 9, 12))
    with pytest.raises(ValueError, match="`momentum` must be in"):
        GroupBatchNormalization(momentum=2)
    with pytest.raises(ValueError, match="only defined under rotations"):
        check_equivariance(lambda x: x, _rng((1, 4, 4, 4)), "p4", "p4", "p4m")


def _p4m_gcnn():
    keras.utils.set_random_seed(2)
    return keras.Sequential([
        keras.Input((12, 12, 1)),
        P4MConvZ2(2, 3, activation="relu"),
        GroupBatchNormalization("p4m"),
        P4MConvP4M(2, 3, activation="relu"),
        GroupSpatialMaxPooling2D(2, group="p4m"),
        GroupPooling("max", group="p4m"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])


def test_a_p4m_gcnn_trains_saves_and_reloads(tmp_path):
    """fit (Keras' default jit_compile), then a .keras round trip with identical outputs."""
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 12, 12, 1)).astype("float32"), rng.integers(0, 3, 32)
    model = _p4m_gcnn()
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = model.fit(x, y, epochs=8, batch_size=16, verbose=0, shuffle=False).history["loss"]
    assert losses[-1] < losses[0]
    path = tmp_path / "p4m.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(reloaded(x[:4])), to_numpy(model(x[:4])), atol=1e-6)
    assert max(check_equivariance(model, x[:2], "planar", "invariant", "p4m").values()) < ATOL


def test_p4m_is_a_superset_of_p4():
    """The first four copies of a p4m bank are the p4 bank (elements (0, r) are the rotations)."""
    kernel = _rng((3, 3, 2, 2))
    p4 = to_numpy(expand_group_kernel(keras.ops.convert_to_tensor(kernel), "p4", False))
    p4m = to_numpy(expand_group_kernel(keras.ops.convert_to_tensor(kernel), "p4m", False))
    np.testing.assert_array_equal(p4m.reshape(3, 3, 2, 2, 8)[..., :4], p4.reshape(3, 3, 2, 2, 4))


def test_the_layers_page_example_runs_and_its_check_passes():
    """docs/layers.md's example, as written (it asserts the p4m invariance itself)."""
    import pathlib
    import re

    page = pathlib.Path(__file__).resolve().parents[1] / "docs" / "layers.md"
    (code,) = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    namespace = {}
    exec(compile(code, str(page), "exec"), namespace)  # noqa: S102
    assert max(namespace["errors"].values()) < ATOL
