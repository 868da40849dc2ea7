"""Shared helpers of the RotEqNet vector-field layers (Marcos et al., ICCV 2017).

Layout of a vector field, used by every layer of this family: a tensor
``(batch, height, width, 2 * F)`` holding ``F`` planar vector maps, the two
components of map ``f`` adjacent:

- channel ``2 * f`` is the x-component: along the image columns, positive
  towards increasing column index (to the right on screen);
- channel ``2 * f + 1`` is the y-component: along the image rows, positive
  towards DEcreasing row index (upwards on screen, row 0 drawn at the top).

With these axes an angle ``theta`` is measured counter-clockwise on screen
from the +x axis, the vector of angle ``theta`` is ``(cos theta, sin theta)``,
and ``numpy.rot90(image, 1, axes=(1, 2))`` (counter-clockwise on screen) acts
on a field as ``V'(p) = R(90) V(R(-90) p)``, i.e. the map is rotated
spatially and each vector ``(x, y)`` becomes ``(-y, x)``
(see `keras_uap.layers.equivariance.rotate_vector_field`).
"""

import functools

import numpy as np
from keras import ops

__all__ = [
    "check_vector_channels",
    "split_vector_field",
    "merge_vector_field",
    "squared_magnitude",
    "safe_sqrt",
    "disk_mask",
    "disk_pixels",
    "orientation_angles",
    "rotation_transforms",
    "component_rotations",
    "direction_table",
]

# Below this squared magnitude `safe_sqrt` switches to a finite-gradient branch.
_SQRT_FLOOR = 1e-12


def check_vector_channels(layer_name, input_shape):
    """Raises unless the channel axis holds (x, y) pairs; returns F."""
    channels = input_shape[-1]
    if channels is None or channels % 2:
        raise ValueError(
            f"{layer_name} expects a vector field whose channel axis is even "
            f"(x, y components of each map adjacent). Received: input_shape={tuple(input_shape)}"
        )
    return channels // 2


def split_vector_field(inputs):
    """(N, H, W, 2F) -> (N, H, W, F, 2), last axis (x, y)."""
    shape = ops.shape(inputs)
    return ops.reshape(inputs, (shape[0], shape[1], shape[2], inputs.shape[-1] // 2, 2))


def merge_vector_field(pairs):
    """(N, H, W, F, 2) -> (N, H, W, 2F)."""
    shape = ops.shape(pairs)
    return ops.reshape(pairs, (shape[0], shape[1], shape[2], pairs.shape[-2] * 2))


def squared_magnitude(inputs):
    """(N, H, W, 2F) vector field -> (N, H, W, F) squared magnitudes x^2 + y^2."""
    return ops.sum(ops.square(split_vector_field(inputs)), axis=-1)


def safe_sqrt(squared):
    """sqrt with a finite gradient at 0 (zero vectors are common after a ReLU).

    Returns ``squared / sqrt(max(squared, 1e-12))``: exactly ``sqrt`` for
    ``squared >= 1e-12``, below it a value under 1e-6 whose gradient with
    respect to the components (``2 u / 1e-6``, with ``|u| < 1e-6``) is bounded.
    """
    return squared / ops.sqrt(ops.maximum(squared, _SQRT_FLOOR))


@functools.lru_cache(maxsize=None)
def disk_mask(size):
    """(size, size) float32 mask of the pixels within radius (size - 1) / 2 of the centre."""
    centre = (size - 1) / 2.0
    rows, cols = np.mgrid[0:size, 0:size]
    inside = (rows - centre) ** 2 + (cols - centre) ** 2 <= centre**2 + 1e-6
    mask = inside.astype("float32")
    mask.flags.writeable = False  # cached and shared
    return mask


@functools.lru_cache(maxsize=None)
def disk_pixels(size):
    """Row-major indices (into the `size * size` window) of the pixels inside
    the disk inscribed in the window: the only ones a rotated filter weighs."""
    disk = np.flatnonzero(disk_mask(size).reshape(-1))
    disk.flags.writeable = False
    return disk


@functools.lru_cache(maxsize=None)
def orientation_angles(n_angles):
    """The sampled orientations 2 pi a / n_angles, a = 0 .. n_angles - 1 (radians)."""
    angles = 2.0 * np.pi * np.arange(n_angles) / n_angles
    angles.flags.writeable = False
    return angles


def _snap(values):
    # cos(pi / 2) is 6e-17, not 0: snapping makes multiples of 90 degrees exact.
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.abs(values) < 1e-12, 0.0, values)


@functools.lru_cache(maxsize=None)
def rotation_transforms(n_angles, size):
    """(n_angles, 8) projective transforms rotating a (size, size) filter.

    Row ``a`` is the transform of `keras.ops.image.affine_transform` that
    rotates a filter by ``2 pi a / n_angles`` counter-clockwise on screen
    about its centre: output pixel (row i, col j) samples the input at
    ``R(-alpha)`` of its centred (x right, y up) coordinates. For
    ``alpha = 90`` degrees this is exactly ``numpy.rot90``.
    """
    c = (size - 1) / 2.0
    angles = orientation_angles(n_angles)
    cos, sin = _snap(np.cos(angles)), _snap(np.sin(angles))
    # input col = c + cos (j - c) - sin (i - c); input row = c + sin (j - c) + cos (i - c)
    transforms = np.stack(
        [cos, -sin, c - c * cos + c * sin, sin, cos, c - c * sin - c * cos, 0 * cos, 0 * cos], axis=1
    ).astype("float32")
    transforms.flags.writeable = False
    return transforms


@functools.lru_cache(maxsize=None)
def component_rotations(n_angles):
    """(n_angles, 2, 2) rotation matrices R(alpha_a) acting on (x, y) components."""
    angles = orientation_angles(n_angles)
    cos, sin = _snap(np.cos(angles)), _snap(np.sin(angles))
    mats = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], axis=1).astype("float32")
    mats.flags.writeable = False
    return mats


@functools.lru_cache(maxsize=None)
def direction_table(n_angles):
    """(n_angles, 2) unit vectors (cos alpha_a, sin alpha_a)."""
    angles = orientation_angles(n_angles)
    table = np.stack([_snap(np.cos(angles)), _snap(np.sin(angles))], axis=1).astype("float32")
    table.flags.writeable = False
    return table

