"""Reusable equivariant Keras 3 layers (p4, p4m and RotEqNet's rotations).

They run on the TensorFlow, JAX and PyTorch backends; importing this package needs
keras and numpy only (RotConv loads its TensorFlow path when that is the
backend). Importing it registers every layer with Keras's serialization, so
`keras.saving.load_model("model.keras")` needs no `custom_objects`.
Conventions and guarantees: docs/layers.md.
"""

from keras_uap.layers.equivariance import (
    check_equivariance,
    rotate_p4,
    rotate_planar,
    rotate_vector_field,
    transform_p4m,
)
from keras_uap.layers.group_batch_normalization import GroupBatchNormalization
from keras_uap.layers.group_pooling import GroupPooling
from keras_uap.layers.group_spatial_max_pooling_2d import GroupSpatialMaxPooling2D
from keras_uap.layers.p4_conv_p4 import P4ConvP4
from keras_uap.layers.p4_conv_z2 import P4ConvZ2
from keras_uap.layers.p4m_conv_p4m import P4MConvP4M
from keras_uap.layers.p4m_conv_z2 import P4MConvZ2
from keras_uap.layers.rot_conv import RotConv
from keras_uap.layers.vector_batch_norm import VectorBatchNorm
from keras_uap.layers.vector_max_pool import VectorMaxPool
from keras_uap.layers.vector_to_magnitude import Vector2Magnitude

__all__ = [
    "P4ConvZ2",
    "P4ConvP4",
    "P4MConvZ2",
    "P4MConvP4M",
    "GroupSpatialMaxPooling2D",
    "GroupPooling",
    "GroupBatchNormalization",
    "RotConv",
    "VectorMaxPool",
    "VectorBatchNorm",
    "Vector2Magnitude",
    "check_equivariance",
    "rotate_planar",
    "rotate_p4",
    "rotate_vector_field",
    "transform_p4m",
]
