"""RotEqNet's MNIST-rot network (Marcos et al., ICCV 2017, Section 4.1); outputs logits.

Feature map sizes: 28 -> RotConv 9x9 "same" 28 -> pool 14 -> RotConv 9x9
"same" 14 -> pool 7 -> pad 1 -> RotConv 9x9 "valid" 1 -> 1x1 convolutions.
The paddings (4, 4, 1) are those of the authors' PyTorch example, so the last
rotating convolution sees the whole 7x7 map and the head is a per-pixel
(here: single-pixel) classifier on rotation-invariant magnitudes.
"""

import keras
from keras import layers

from keras_uap.layers import RotConv, Vector2Magnitude, VectorBatchNorm, VectorMaxPool

__all__ = ["build_roteqnet", "N_ANGLES"]

N_ANGLES = 17


def _final_map_size(size):
    """The side of the last RotConv's map for an input side `size`."""
    return size // 2 // 2 + 2 - 9 + 1


def build_roteqnet(input_shape=(28, 28, 1), num_classes=10, n_angles=N_ANGLES, name="roteqnet"):
    """RotEqNet's MNIST-rot network (see the module docstring), logits out.

    Args:
        input_shape: (height, width, channels); height and width 28 to 31,
            the sizes for which the last rotating convolution sees the whole
            map and ends at 1x1 (the head classifies that single pixel).
        num_classes: number of logits.
        n_angles: orientations of every RotConv.
        name: the model's name.

    Raises:
        ValueError: an input size whose last map is not 1x1 (the head would
            flatten a larger map into more than `num_classes` outputs).
    """
    height, width = input_shape[0], input_shape[1]
    if _final_map_size(height) != 1 or _final_map_size(width) != 1:
        raise ValueError(f"build_roteqnet needs inputs of 28 to 31 pixels a side (its last map must be 1x1). "
                         f"Received: input_shape={tuple(input_shape)}")
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            RotConv(6, 9, n_angles=n_angles, mode="scalar", padding="same"),
            VectorMaxPool(2),
            VectorBatchNorm(),
            RotConv(16, 9, n_angles=n_angles, mode="vector", padding="same"),
            VectorMaxPool(2),
            VectorBatchNorm(),
            layers.ZeroPadding2D(1),
            RotConv(32, 9, n_angles=n_angles, mode="vector", padding="valid"),
            Vector2Magnitude(),
            layers.Conv2D(128, 1),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.Dropout(0.7),
            layers.Conv2D(num_classes, 1),
            layers.Flatten(),
        ],
        name=name,
    )
