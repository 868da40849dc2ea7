"""Filter transformations of the p4 group (rotations by multiples of 90 degrees).

The channel layout throughout is GrouPy's folded layout: channel ``c * 4 + r``
holds feature ``c`` at rotation ``r`` (``r`` times 90 degrees counter-clockwise,
in the sense of ``numpy.rot90`` on the spatial axes of an ``(H, W)`` image).
"""

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


def expand_z2_kernel(kernel):
    """Lifting filter bank: (k, k, C_in, F) -> (k, k, C_in, 4 * F).

    Output channel ``f * 4 + r`` is filter ``f`` rotated by ``r`` * 90 degrees.
    """
    kh, kw, c_in, filters = kernel.shape
    rotated = [rot90_spatial(kernel, r) for r in range(4)]
    stacked = ops.stack(rotated, axis=-1)  # (k, k, C_in, F, 4)
    return ops.reshape(stacked, (kh, kw, c_in, filters * 4))


def expand_p4_kernel(kernel):
    """Group filter bank: (k, k, 4 * C_in, F) -> (k, k, 4 * C_in, 4 * F).

    For output rotation ``r`` the filter is rotated spatially by ``r`` and its
    input rotation axis is shifted cyclically by ``r``:
    ``W_r[:, :, c*4 + s, f] = rot90^r(W[:, :, c*4 + (s - r) % 4, f])``.
    This is psi(r^-1 h) for h = (x, s) in p4, so the group correlation
    commutes with rotating its input.
    """
    kh, kw, c_in4, filters = kernel.shape
    grouped = ops.reshape(kernel, (kh, kw, c_in4 // 4, 4, filters))
    banks = [rot90_spatial(ops.roll(grouped, shift=r, axis=3), r) for r in range(4)]
    stacked = ops.stack(banks, axis=-1)  # (k, k, C_in, 4, F, 4)
    return ops.reshape(stacked, (kh, kw, c_in4, filters * 4))
