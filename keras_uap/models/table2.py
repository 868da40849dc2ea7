"""StdCNN and GCNN exactly as Table 2 of the paper; both output logits.

Feature map sizes with valid padding: 28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 4.
The GCNN keeps the rotation axis up to the dense layer (4 x 4 x 80 = 1280
features), as GrouPy's reference MNIST network does.
"""

import keras
from keras import layers

from keras_uap.layers import GroupSpatialMaxPooling2D, P4ConvP4, P4ConvZ2

__all__ = ["INPUT_SHAPE", "NUM_CLASSES", "build_stdcnn", "build_gcnn"]

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def build_stdcnn(input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES, name="stdcnn"):
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(10, 3, activation="relu"),
            layers.Conv2D(10, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(20, 3, activation="relu"),
            layers.Conv2D(20, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(50, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes),
        ],
        name=name,
    )


def build_gcnn(input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES, name="gcnn"):
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            P4ConvZ2(10, 3, activation="relu"),
            P4ConvP4(10, 3, activation="relu"),
            GroupSpatialMaxPooling2D(2),
            P4ConvP4(20, 3, activation="relu"),
            P4ConvP4(20, 3, activation="relu"),
            GroupSpatialMaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(50, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes),
        ],
        name=name,
    )
