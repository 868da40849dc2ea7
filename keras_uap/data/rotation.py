"""Rotating images by arbitrary angles with a library op.

Uses `keras.ops.image.affine_transform` (TensorFlow's ImageProjectiveTransform
kernel): bilinear interpolation, zero fill outside the image.
"""

import numpy as np
from keras import ops

__all__ = ["MAX_ANGLE", "rotation_transforms", "rotate_images"]

MAX_ANGLE = 180.0  # the study rotates uniformly in [-MAX_ANGLE, MAX_ANGLE] degrees


def rotation_transforms(angles_deg, height, width):
    """Projective transforms that rotate by `angles_deg` about the image centre.

    Positive angles rotate counter-clockwise as the image is drawn (row 0 at
    the top), the same sense as `numpy.rot90`. Each row maps an output pixel
    (x, y) to the input pixel it samples.
    """
    theta = ops.cast(angles_deg, "float32") * (np.pi / 180.0)
    cos, sin = ops.cos(theta), ops.sin(theta)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    # With y pointing down, a counter-clockwise turn on screen samples the
    # input at [[c, -s], [s, c]] @ (output - centre) + centre.
    x_offset = cx - (cos * cx - sin * cy)
    y_offset = cy - (sin * cx + cos * cy)
    zeros = ops.zeros_like(theta)
    return ops.stack([cos, -sin, x_offset, sin, cos, y_offset, zeros, zeros], axis=1)


def rotate_images(images, angles_deg):
    """Rotates each image of a (N, H, W, C) float batch by its own angle in degrees."""
    height, width = images.shape[1], images.shape[2]
    transforms = rotation_transforms(angles_deg, height, width)
    return ops.image.affine_transform(
        images, transforms, interpolation="bilinear", fill_mode="constant", fill_value=0.0,
        data_format="channels_last",
    )
