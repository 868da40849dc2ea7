import keras

from keras_uap.layers.base_p4_conv import BaseP4Conv


@keras.saving.register_keras_serializable(package="keras_uap")
class P4MConvZ2(BaseP4Conv):
    """Lifting convolution from planar images to the p4m group (Cohen & Welling, 2016).

    Each of the `filters` learned filters is correlated with the input at
    the 8 elements of p4m: rotations by 0, 90, 180 and 270 degrees, each
    with and without a mirror image (element `(m, r)`, index `4 m + r`:
    `r` quarter turns counter-clockwise, then a flip of the rows if `m`;
    see `keras_uap.layers.p4_ops`). Moving the input by an element `g` moves
    every output map by `g` and sends its group index `t` to `g t`. Exact
    under the conditions given for `P4ConvZ2`.

    Args:
        filters: number of learned filters; the output has `8 * filters` channels.
        kernel_size, strides, padding, activation, use_bias, initializers and
            regularizers: as in `P4ConvZ2`.

    Input shape:
        4D tensor `(batch, height, width, channels)`.

    Output shape:
        4D tensor `(batch, new_height, new_width, 8 * filters)`; channel
        `c * 8 + t` holds filter `c` at element `t` (GrouPy's layout).

    Example:

    >>> x = np.random.rand(2, 28, 28, 1).astype("float32")
    >>> tuple(P4MConvZ2(10, 3)(x).shape)
    (2, 26, 26, 80)
    """

    _group = "p4m"
    _input_is_group = False
