"""The groups p4 (rotations by multiples of 90 degrees) and p4m (those and
their mirror images): their elements, their action on planes and on feature
maps, and the filter-bank transformation of the group convolutions.

An element of p4m is a pair ``(m, r)``, the matrix ``M^m R^r`` acting on
(row, column) offsets (GrouPy's convention): first ``R^r``, a rotation by
``r`` * 90 degrees counter-clockwise on screen (``numpy.rot90`` on the
spatial axes of an ``(H, W)`` image), then, if ``m == 1``, the mirror
``M`` that negates the row offset (``numpy.flip`` along the rows). p4 is
the subgroup ``m == 0``. Element ``(m, r)`` has index ``4 * m + r``.

Feature maps on a group use GrouPy's folded channel layout: channel
``c * G + t`` holds feature ``c`` at group element ``t`` (``G = 4`` for
p4, 8 for p4m).
"""

import functools

import numpy as np
from keras import ops

__all__ = [
    "GROUP_ORDERS",
    "group_elements",
    "check_group_channels",
    "compose",
    "inverse",
    "transform_plane",
    "permute_group_axis",
    "expand_group_kernel",
]

GROUP_ORDERS = {"p4": 4, "p4m": 8}


def group_elements(group):
    """The elements `(m, r)` of "p4" or "p4m", in index order."""
    if group not in GROUP_ORDERS:
        raise ValueError(f"`group` must be one of {tuple(GROUP_ORDERS)}. Received: group={group}")
    return [divmod(t, 4) for t in range(GROUP_ORDERS[group])]


def check_group_channels(layer_name, input_shape, group):
    """Raises unless the channel axis folds a map on `group`; returns the number of features."""
    order = GROUP_ORDERS[group]
    channels = input_shape[-1]
    if channels is None or channels % order:
        raise ValueError(
            f"{layer_name} expects a {group} feature map whose channel axis is a multiple of "
            f"{order}. Received: input_shape={tuple(input_shape)}"
        )
    return channels // order


def compose(a, b):
    """The product `a b` of two elements `(m, r)`: from
    `R^r1 M^m2 = M^m2 R^((-1)^m2 r1)`."""
    (m1, r1), (m2, r2) = a, b
    return m1 ^ m2, ((-1) ** m2 * r1 + r2) % 4


def inverse(a):
    """`(m, r)^-1`: a rotation's inverse turns back; a mirror image is its own."""
    m, r = a
    return m, (r if m else -r) % 4


def transform_plane(x, element, axes=(0, 1)):
    """NumPy array `x` moved by `element` over its two spatial `axes`:
    `y(p) = x(element^-1 p)`, i.e. rotated by `r` quarter turns
    (`numpy.rot90`) then, if `m`, flipped along the rows."""
    m, r = element
    x = np.rot90(np.asarray(x), r, axes=axes)
    return np.flip(x, axis=axes[0]) if m else x


def permute_group_axis(element, group):
    """Index array `p` with `y[..., t] = x[..., p[t]]` for the map moved by
    `element`: element `t` reads element `element^-1 t`."""
    back = inverse(element)
    return np.array([4 * m + r for m, r in (compose(back, t) for t in group_elements(group))])


@functools.lru_cache(maxsize=None)
def _source_rows(kh, kw, c_in, group, input_is_group):
    """Row indices of the filter bank's expansion, as a NumPy int32 array.

    A filter bank ``(kh, kw, c_in * G_in, F)`` is viewed as a matrix of
    ``kh * kw * c_in * G_in`` rows of ``F`` values. Entry ``[i, j, c, s, t]``
    of the result (``s`` absent for a planar input) is the row that the copy
    for output element ``t`` reads at ``(i, j, c, s)``: the filter moved by
    ``t`` in the plane and, on a group input, along its group axis too.
    """
    g_in = GROUP_ORDERS[group] if input_is_group else 1
    rows = np.arange(kh * kw * c_in * g_in).reshape(kh, kw, c_in, g_in)
    banks = []
    for element in group_elements(group):
        moved = rows[..., permute_group_axis(element, group)] if input_is_group else rows
        banks.append(np.asarray(transform_plane(moved, element)))
    index = np.stack(banks, axis=-1)  # (kh, kw, c_in, g_in, G)
    if not input_is_group:
        index = index[:, :, :, 0]
    index = index.astype(np.int32)
    index.flags.writeable = False  # cached and shared
    return index


def expand_group_kernel(kernel, group, input_is_group):
    """The filter bank of a group convolution: `(k, k, C, F)` -> `(k, k, C, G * F)`.

    Output channel ``f * G + t`` is filter ``f`` moved by element ``t``:
    ``W_t(p, s) = W(t^-1 p, t^-1 s)`` (``s`` the input's group element, only
    for a group input, channel ``c * G + s``), so that the correlation
    commutes with moving its input by any element of the group.
    """
    # One gather of whole rows (F values each) with a precomputed index, then
    # one transpose that moves the new group axis behind F. This replaces
    # the ~13 rot90/roll/stack ops (and their gradients) of the direct
    # construction, which cost ~5-8% of a P4ConvP4 training step on CPU; a
    # gather of single elements instead is slow on the TF CPU kernels.
    kh, kw, channels, filters = kernel.shape
    g_in = GROUP_ORDERS[group] if input_is_group else 1
    index = _source_rows(kh, kw, channels // g_in, group, input_is_group)
    rows = ops.reshape(kernel, (kh * kw * channels, filters))
    gathered = ops.take(rows, index, axis=0)  # (kh, kw, c_in[, G_in], G, F)
    perm = tuple(range(gathered.ndim - 2)) + (gathered.ndim - 1, gathered.ndim - 2)
    return ops.reshape(ops.transpose(gathered, perm), (kh, kw, channels, filters * GROUP_ORDERS[group]))
