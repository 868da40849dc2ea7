"""Shared logic of the p4 group convolutions (P4ConvZ2, P4ConvP4)."""

import keras
from keras import ops

GROUP_ORDER = 4


def _normalize_kernel_size(kernel_size):
    if isinstance(kernel_size, int):
        kernel_size = (kernel_size, kernel_size)
    kernel_size = tuple(int(k) for k in kernel_size)
    if len(kernel_size) != 2 or kernel_size[0] != kernel_size[1] or kernel_size[0] < 1:
        raise ValueError(
            "`kernel_size` must be a positive int or a square (k, k) tuple, since "
            f"the filter is rotated by 90 degrees. Received: kernel_size={kernel_size}"
        )
    return kernel_size


def _normalize_strides(strides):
    if isinstance(strides, int):
        strides = (strides, strides)
    strides = tuple(int(s) for s in strides)
    if len(strides) != 2 or min(strides) < 1:
        raise ValueError(f"`strides` must be a positive int or pair. Received: strides={strides}")
    return strides


def conv_output_length(length, kernel, stride, padding):
    """Spatial size after a convolution (None stays None)."""
    if length is None:
        return None
    if padding == "same":
        return (length + stride - 1) // stride
    return (length - kernel) // stride + 1


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
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"`filters` must be a positive int. Received: filters={filters}")
        padding = str(padding).lower()
        if padding not in ("valid", "same"):
            raise ValueError(f"`padding` must be 'valid' or 'same'. Received: padding={padding}")
        self.filters = filters
        self.kernel_size = _normalize_kernel_size(kernel_size)
        self.strides = _normalize_strides(strides)
        self.padding = padding
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
