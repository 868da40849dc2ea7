import keras

from keras_uap.layers.base_p4_conv import BaseP4Conv


@keras.saving.register_keras_serializable(package="keras_uap")
class P4MConvP4M(BaseP4Conv):
    """Group convolution on p4m feature maps (Cohen & Welling, 2016).

    The input is a p4m feature map in GrouPy's folded layout (channel
    `c * 8 + s` is feature `c` at element `s`, see `P4MConvZ2`). For output
    element `t` the learned filter is moved by `t` both in the plane and
    along its input group axis, `W_t(p, s) = W(t^-1 p, t^-1 s)`, so moving
    the input by any of the 8 elements does the same to the output. Exact
    under the conditions given for `P4ConvZ2`.

    Args:
        filters: number of learned filters; the output has `8 * filters` channels.
        kernel_size, strides, padding, activation, use_bias, initializers and
            regularizers: as in `P4ConvZ2`.

    Input shape:
        4D tensor `(batch, height, width, 8 * in_filters)`.

    Output shape:
        4D tensor `(batch, new_height, new_width, 8 * filters)`.

    Example:

    >>> x = np.random.rand(2, 26, 26, 40).astype("float32")
    >>> tuple(P4MConvP4M(10, 3)(x).shape)
    (2, 24, 24, 80)
    """

    _group = "p4m"
    _input_is_group = True
