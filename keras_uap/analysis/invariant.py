"""Invariant directions: how an image changes under a small rotation.

For a network trained with rotation augmentation, a small rotation of an
input should barely change the loss, so `rotate(x, 2 degrees) - x` lies
close to the level set of the loss: the paper's invariant directions.
"""

import numpy as np

from keras_uap.data.rotation import rotate_images

__all__ = ["invariant_directions"]


def invariant_directions(x, angle_deg=2.0, clip_min=0.0, clip_max=1.0, batch_size=2000):
    """`rotate(x, angle_deg) - x` for each image of (N, H, W, C) `x`, with
    the data stage's rotation op (bilinear, zero fill), flattened to (N, d);
    the rotated images are clipped to the inputs' range [clip_min, clip_max]
    (float rounding can step just outside it)."""
    x = np.asarray(x, np.float32)
    out = np.empty((len(x), x[0].size), np.float32)
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        angles = np.full(len(batch), angle_deg, np.float32)
        rotated = np.clip(np.asarray(rotate_images(batch, angles)), clip_min, clip_max)
        out[start:start + len(batch)] = (rotated - batch).reshape(len(batch), -1)
    return out
