"""Shared logic of the p4 group convolutions (P4ConvZ2, P4ConvP4)."""

import keras
from keras import ops

from keras_uap.layers.conv_args import (
    check_window_fits,
    conv_output_length,
    padding_mode,
    positive_int,
    positive_int_pair,
    square_kernel_size,
)

GROUP_ORDER = 4


class BaseP4Conv(keras.layers.Layer):
    """Base of the p4 convolutions: holds a filter per output feature and
    convolves with its four rotated copies in a single `conv` call.

    Subclasses set `_input_group_order` (1 for a planar input, 4 for a p4
    feature map) and `_expand_kernel` (the filter-bank transform).
    """

    _input_group_order = 1

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        activation=None,
        use_bias=True,
        kernel_initializer="he_normal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = positive_int(filters, "filters")
        self.kernel_size = square_kernel_size(kernel_size, "the filter is rotated by 90 degrees")
        self.strides = positive_int_pair(strides, "strides")
        self.padding = padding_mode(padding)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _expand_kernel(self, kernel):
        raise NotImplementedError

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % self._input_group_order:
            raise ValueError(
                f"{type(self).__name__} expects the channel axis to be a multiple of "
                f"{self._input_group_order}. Received: input_shape={tuple(input_shape)}"
            )
        check_window_fits(type(self).__name__, input_shape, self.kernel_size, self.padding)
        self.kernel = self.add_weight(
            name="kernel",
            shape=self.kernel_size + (channels, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            # One bias per filter, shared by its four rotations (equivariance needs it).
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})

    def call(self, inputs):
        outputs = ops.conv(
            inputs,
            self._expand_kernel(self.kernel),
            strides=self.strides,
            padding=self.padding,
            data_format="channels_last",
        )
        if self.use_bias:
            outputs = outputs + ops.repeat(self.bias, GROUP_ORDER)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        check_window_fits(type(self).__name__, input_shape, self.kernel_size, self.padding)
        batch, height, width, _ = input_shape
        k, s = self.kernel_size[0], self.strides
        return (
            batch,
            conv_output_length(height, k, s[0], self.padding),
            conv_output_length(width, k, s[1], self.padding),
            self.filters * GROUP_ORDER,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
