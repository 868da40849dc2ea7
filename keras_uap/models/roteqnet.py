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


def build_roteqnet(input_shape=(28, 28, 1), num_classes=10, n_angles=N_ANGLES, name="roteqnet"):
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
