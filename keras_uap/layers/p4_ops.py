"""Filter transformations of the p4 group (rotations by multiples of 90 degrees).

The channel layout throughout is GrouPy's folded layout: channel ``c * 4 + r``
holds feature ``c`` at rotation ``r`` (``r`` times 90 degrees counter-clockwise,
in the sense of ``numpy.rot90`` on the spatial axes of an ``(H, W)`` image).
"""

import functools

import numpy as np
from keras import ops

__all__ = ["rot90_spatial", "expand_z2_kernel", "expand_p4_kernel"]


def rot90_spatial(kernel, k):
    """Rotates the first two (spatial) axes of `kernel` by `k` * 90 degrees.

    Matches ``numpy.rot90(kernel, k, axes=(0, 1))``: counter-clockwise for an
    image whose row 0 is drawn at the top.
    """
    k = k % 4
    if k == 0:
        return kernel
    if k == 2:
        return ops.flip(ops.flip(kernel, axis=0), axis=1)
    perm = (1, 0) + tuple(range(2, len(kernel.shape)))
    swapped = ops.transpose(kernel, perm)
    return ops.flip(swapped, axis=0 if k == 1 else 1)


@functools.lru_cache(maxsize=None)
def _source_rows(kh, kw, c_in, group_order):
    """Row indices of the filter bank's expansion, as a NumPy int32 array.

    A filter bank ``(kh, kw, c_in * group_order, F)`` is viewed as a matrix of
    ``kh * kw * c_in * group_order`` rows of ``F`` values. Entry
    ``[i, j, c, s, r]`` of the result (``s`` absent when ``group_order`` is 1)
    is the row that the rotation-``r`` copy reads at ``(i, j, c, s)``: the
    row of ``rot90^r`` of the filter, with the input rotation axis ``s``
    shifted cyclically by ``r`` (``np.roll``).
    """
    rows = np.arange(kh * kw * c_in * group_order).reshape(kh, kw, c_in, group_order)
    banks = [np.rot90(np.roll(rows, r, axis=3), r, axes=(0, 1)) for r in range(4)]
    index = np.stack(banks, axis=-1)  # (kh, kw, c_in, group_order, 4)
    if group_order == 1:
        index = index[:, :, :, 0]
    index = index.astype(np.int32)
    index.flags.writeable = False  # cached and shared
    return index


def _expand(kernel, c_in, group_order):
    # One gather of whole rows (F values each) with a precomputed index, then
    # one transpose that moves the new rotation axis behind F. This replaces
    # the ~13 rot90/roll/stack ops (and their gradients) of the direct
    # construction, which cost ~5-8% of a P4ConvP4 training step on CPU; a
    # gather of single elements instead is slow on the TF CPU kernels.
    kh, kw, _, filters = kernel.shape
    index = _source_rows(kh, kw, c_in, group_order)
    rows = ops.reshape(kernel, (kh * kw * c_in * group_order, filters))
    gathered = ops.take(rows, index, axis=0)  # (kh, kw, c_in[, 4], 4, F)
    perm = tuple(range(gathered.ndim - 2)) + (gathered.ndim - 1, gathered.ndim - 2)
    return ops.reshape(ops.transpose(gathered, perm), (kh, kw, c_in * group_order, filters * 4))


def expand_z2_kernel(kernel):
    """Lifting filter bank: (k, k, C_in, F) -> (k, k, C_in, 4 * F).

    Output channel ``f * 4 + r`` is filter ``f`` rotated by ``r`` * 90 degrees:
    ``W_r[:, :, c, f] = rot90^r(W[:, :, c, f])``.
    """
    return _expand(kernel, kernel.shape[2], 1)


def expand_p4_kernel(kernel):
    """Group filter bank: (k, k, 4 * C_in, F) -> (k, k, 4 * C_in, 4 * F).

    For output rotation ``r`` the filter is rotated spatially by ``r`` and its
    input rotation axis is shifted cyclically by ``r``:
    ``W_r[:, :, c*4 + s, f] = rot90^r(W[:, :, c*4 + (s - r) % 4, f])``.
    This is psi(r^-1 h) for h = (x, s) in p4, so the group correlation
    commutes with rotating its input. Output channel ``f * 4 + r``.
    """
    return _expand(kernel, kernel.shape[2] // 4, 4)
