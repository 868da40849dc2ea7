"""Reusable checks of p4 equivariance for layers and models.

The action of a rotation by `k` * 90 degrees on a feature map:
- planar map (N, H, W, C): rotate H, W as `numpy.rot90(x, k, axes=(1, 2))`;
- p4 map (N, H, W, 4 * C): rotate spatially and shift each feature's
  rotation index cyclically by `k` (channel `c * 4 + r` -> `c * 4 + (r + k) % 4`).
- vector field (N, H, W, 2 * F) (RotEqNet layout: channel `2 f` the x-component,
  positive to the right; `2 f + 1` the y-component, positive UP): rotate
  spatially and rotate each vector by `k` * 90 degrees, `(x, y) -> (-y, x)` per step.
"""

import numpy as np

__all__ = ["rotate_planar", "rotate_p4", "rotate_vector_field", "check_equivariance"]


def rotate_planar(x, k):
    return np.rot90(np.asarray(x), k, axes=(1, 2))


def rotate_p4(x, k):
    x = rotate_planar(x, k)
    n, h, w, c = x.shape
    grouped = x.reshape(n, h, w, c // 4, 4)
    return np.roll(grouped, k, axis=-1).reshape(n, h, w, c)


def rotate_vector_field(x, k):
    """Rotates a vector field by `k` * 90 degrees counter-clockwise on screen:
    positions as `numpy.rot90(x, k, axes=(1, 2))`, and each (x, y) pair
    (y positive up) by the same angle, `(x, y) -> (-y, x)` per quarter turn."""
    x = rotate_planar(x, k)
    n, h, w, c = x.shape
    if c % 2:
        raise ValueError(f"A vector field needs an even channel axis. Received: shape={x.shape}")
    pairs = x.reshape(n, h, w, c // 2, 2)
    for _ in range(k % 4):
        pairs = np.stack([-pairs[..., 1], pairs[..., 0]], axis=-1)
    return pairs.reshape(n, h, w, c)


_ACTIONS = {
    "planar": rotate_planar,
    "p4": rotate_p4,
    "vector": rotate_vector_field,
    "invariant": lambda x, k: np.asarray(x),
}


def check_equivariance(fn, x, input_kind="planar", output_kind="p4"):
    """Largest absolute error of `fn(g x) - g fn(x)` for each rotation g.

    Args:
        fn: a layer, model or callable on (N, H, W, C) arrays.
        x: input batch (square spatial size).
        input_kind: "planar", "p4" or "vector", how a rotation acts on the input.
        output_kind: "planar", "p4", "vector" or "invariant" (rotations act
            trivially, e.g. after global pooling).

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
