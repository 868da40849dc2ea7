"""Reusable checks of p4 and p4m equivariance for layers and models.

The action of a group element on a feature map (elements as in `p4_ops`:
`(m, r)`, `r` quarter turns counter-clockwise then, if `m`, a flip of the rows):
- planar map (N, H, W, C): move H, W as `p4_ops.transform_plane` (for a
  rotation `k`, `numpy.rot90(x, k, axes=(1, 2))`);
- p4 map (N, H, W, 4 * C): move spatially and shift each feature's
  rotation index cyclically by `k` (channel `c * 4 + r` -> `c * 4 + (r + k) % 4`);
- p4m map (N, H, W, 8 * C): move spatially and send each feature's group
  element `t` (channel `c * 8 + t`) to `g t`;
- vector field (N, H, W, 2 * F) (RotEqNet layout: channel `2 f` the x-component,
  positive to the right; `2 f + 1` the y-component, positive UP): rotate
  spatially and rotate each vector by `k` * 90 degrees, `(x, y) -> (-y, x)` per step
  (rotations only).
"""

import numpy as np
from keras import ops

from keras_uap.layers.p4_ops import group_elements, permute_group_axis, transform_plane

__all__ = ["rotate_planar", "rotate_p4", "rotate_vector_field", "transform_p4m", "check_equivariance"]


def rotate_planar(x, k):
    return np.rot90(np.asarray(x), k, axes=(1, 2))


def rotate_p4(x, k):
    x = rotate_planar(x, k)
    n, h, w, c = x.shape
    grouped = x.reshape(n, h, w, c // 4, 4)
    return np.roll(grouped, k, axis=-1).reshape(n, h, w, c)


def transform_p4m(x, element):
    """A p4m feature map `(N, H, W, 8 * C)` moved by `element` `(m, r)`."""
    x = transform_plane(x, element, axes=(1, 2))
    n, h, w, c = x.shape
    grouped = x.reshape(n, h, w, c // 8, 8)
    return grouped[..., permute_group_axis(element, "p4m")].reshape(n, h, w, c)


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


def _rotation_only(action):
    def act(x, element):
        m, r = element
        if m:
            raise ValueError("This kind of map is only defined under rotations; use group='p4'.")
        return action(x, r)

    return act


_ACTIONS = {
    "planar": lambda x, g: transform_plane(x, g, axes=(1, 2)),
    "p4": _rotation_only(rotate_p4),
    "p4m": transform_p4m,
    "vector": _rotation_only(rotate_vector_field),
    "invariant": lambda x, g: np.asarray(x),
}


def check_equivariance(fn, x, input_kind="planar", output_kind="p4", group="p4"):
    """Largest absolute error of `fn(g x) - g fn(x)` for each group element g.

    Args:
        fn: a layer, model or callable on (N, H, W, C) arrays.
        x: input batch (square spatial size).
        input_kind: "planar", "p4", "p4m" or "vector", how an element acts on the input.
        output_kind: "planar", "p4", "p4m", "vector" or "invariant" (the
            group acts trivially, e.g. after global pooling).
        group: "p4" (rotations by 90, 180, 270 degrees) or "p4m" (all 8
            elements, mirror images included).

    Returns:
        For "p4", dict {k: max abs error} for rotations by k * 90 degrees,
        k = 1, 2, 3; for "p4m", dict {(m, r): max abs error} for all 8
        elements (the identity's error is 0 unless `fn` is not deterministic).
    """
    act_in, act_out = _ACTIONS[input_kind], _ACTIONS[output_kind]
    reference = ops.convert_to_numpy(fn(x))
    if group == "p4":
        elements = {k: (0, k) for k in (1, 2, 3)}
    else:
        elements = {element: element for element in group_elements(group)}
    errors = {}
    for key, element in elements.items():
        moved_input = np.ascontiguousarray(act_in(x, element))
        errors[key] = float(np.max(np.abs(ops.convert_to_numpy(fn(moved_input)) - act_out(reference, element))))
    return errors
