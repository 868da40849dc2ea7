import keras

from keras_uap.layers.base_p4_conv import BaseP4Conv


@keras.saving.register_keras_serializable(package="keras_uap")
class P4ConvP4(BaseP4Conv):
    """Group convolution on p4 feature maps (Cohen & Welling, 2016).

    The input is a p4 feature map in GrouPy's folded layout (channel
    `c * 4 + s` is feature `c` at rotation `s`). For output rotation `r` the
    learned filter is rotated spatially by `r` * 90 degrees and its input
    rotation axis shifted cyclically by `r`, so rotating the input by 90
    degrees (spatially, and shifting its rotation index) does the same to the
    output. Exact under the conditions given for `P4ConvZ2`.

    Args:
        filters: number of learned filters; the output has `4 * filters` channels.
        kernel_size, strides, padding, activation, use_bias, initializers and
            regularizers: as in `P4ConvZ2`.

    Input shape:
        4D tensor `(batch, height, width, 4 * in_filters)`.

    Output shape:
        4D tensor `(batch, new_height, new_width, 4 * filters)`.

    Example:

    >>> x = np.random.rand(2, 26, 26, 40).astype("float32")
    >>> tuple(P4ConvP4(10, 3)(x).shape)
    (2, 24, 24, 40)
    """

    _group = "p4"
    _input_is_group = True
