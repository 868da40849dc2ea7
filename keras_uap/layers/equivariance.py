"""Reusable checks of p4 equivariance for layers and models.

The action of a rotation by `k` * 90 degrees on a feature map:
- planar map (N, H, W, C): rotate H, W as `numpy.rot90(x, k, axes=(1, 2))`;
- p4 map (N, H, W, 4 * C): rotate spatially and shift each feature's
  rotation index cyclically by `k` (channel `c * 4 + r` -> `c * 4 + (r + k) % 4`).
"""

import numpy as np

__all__ = ["rotate_planar", "rotate_p4", "check_equivariance"]


def rotate_planar(x, k):
    return np.rot90(np.asarray(x), k, axes=(1, 2))


def rotate_p4(x, k):
    x = rotate_planar(x, k)
    n, h, w, c = x.shape
    grouped = x.reshape(n, h, w, c // 4, 4)
    return np.roll(grouped, k, axis=-1).reshape(n, h, w, c)


_ACTIONS = {"planar": rotate_planar, "p4": rotate_p4, "invariant": lambda x, k: np.asarray(x)}


def check_equivariance(fn, x, input_kind="planar", output_kind="p4"):
    """Largest absolute error of `fn(g x) - g fn(x)` for each rotation g.

    Args:
        fn: a layer, model or callable on (N, H, W, C) arrays.
        x: input batch (square spatial size).
        input_kind: "planar" or "p4", how a rotation acts on the input.
        output_kind: "planar", "p4" or "invariant" (rotations act trivially,
            e.g. after global pooling).

    Returns:
        dict {k: max abs error} for rotations by k * 90 degrees, k = 1, 2, 3.
    """
    act_in, act_out = _ACTIONS[input_kind], _ACTIONS[output_kind]
    reference = np.asarray(fn(x))
    errors = {}
    for k in (1, 2, 3):
        rotated_input = np.ascontiguousarray(act_in(x, k))
        errors[k] = float(np.max(np.abs(np.asarray(fn(rotated_input)) - act_out(reference, k))))
    return errors
