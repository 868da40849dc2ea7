"""The one base of the package's convolutions (the p4/p4m group convolutions
and RotConv): argument normalisation, weight building, output shape and config."""

import keras

from keras_uap.layers.conv_args import (
    check_window_fits,
    conv_output_length,
    padding_mode,
    positive_int,
    positive_int_pair,
    square_kernel_size,
)


class BaseGroupConv(keras.layers.Layer):
    """Holds one learned `(k, k, C_in, filters)` kernel and one bias per filter,
    which a subclass transforms into a bank of filter copies (rotated,
    mirrored) in `call`.

    Subclasses set `_square_kernel_reason` (ends the error for a non-square
    kernel), and implement `_input_channels(input_shape)` (checks the channel
    axis, returns its size) and `_output_channels()`.
    """

    _square_kernel_reason = "the filter is transformed by the group"

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        use_bias=True,
        kernel_initializer="he_normal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = positive_int(filters, "filters")
        self.kernel_size = square_kernel_size(kernel_size, self._square_kernel_reason)
        self.strides = positive_int_pair(strides, "strides")
        self.padding = padding_mode(padding)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _input_channels(self, input_shape):
        raise NotImplementedError

    def _output_channels(self):
        raise NotImplementedError

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        check_window_fits(type(self).__name__, input_shape, self.kernel_size, self.padding)
        self.kernel = self.add_weight(
            name="kernel",
            shape=self.kernel_size + (channels, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            # One bias per filter, shared by all its transformed copies (equivariance needs it).
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})

    def compute_output_shape(self, input_shape):
        check_window_fits(type(self).__name__, input_shape, self.kernel_size, self.padding)
        batch, height, width, _ = input_shape
        k, s = self.kernel_size[0], self.strides
        return (
            batch,
            conv_output_length(height, k, s[0], self.padding),
            conv_output_length(width, k, s[1], self.padding),
            self._output_channels(),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
