"""Shared logic of the group convolutions on p4 and p4m (P4ConvZ2, P4ConvP4,
P4MConvZ2, P4MConvP4M)."""

import keras
from keras import ops

from keras_uap.layers.base_group_conv import BaseGroupConv
from keras_uap.layers.p4_ops import GROUP_ORDERS, expand_group_kernel


class BaseP4Conv(BaseGroupConv):
    """Base of the split group convolutions: holds a filter per output feature
    and convolves with all its transformed copies in a single `conv` call.

    Subclasses set `_group` ("p4" or "p4m", the output's group) and
    `_input_is_group` (False for a planar input, True for a feature map on
    the same group).
    """

    _group = "p4"
    _input_is_group = False
    _square_kernel_reason = "the filter is rotated by 90 degrees"

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
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            **kwargs,
        )
        self.activation = keras.activations.get(activation)

    @property
    def _group_order(self):
        return GROUP_ORDERS[self._group]

    def _input_channels(self, input_shape):
        channels = input_shape[-1]
        multiple = self._group_order if self._input_is_group else 1
        if channels is None or channels % multiple:
            raise ValueError(
                f"{type(self).__name__} expects the channel axis to be a multiple of "
                f"{multiple}. Received: input_shape={tuple(input_shape)}"
            )
        return channels

    def _output_channels(self):
        return self.filters * self._group_order

    def call(self, inputs):
        kernel = expand_group_kernel(self.kernel, self._group, self._input_is_group)
        outputs = ops.conv(inputs, kernel, strides=self.strides, padding=self.padding, data_format="channels_last")
        if self.use_bias:
            outputs = outputs + ops.repeat(self.bias, self._group_order)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config["activation"] = keras.activations.serialize(self.activation)
        return config
