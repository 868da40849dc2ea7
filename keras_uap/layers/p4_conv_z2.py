import keras

from keras_uap.layers.base_p4_conv import BaseP4Conv


@keras.saving.register_keras_serializable(package="keras_uap")
class P4ConvZ2(BaseP4Conv):
    """Lifting convolution from planar images to the p4 group (Cohen & Welling, 2016).

    Each of the `filters` learned filters is correlated with the input at the
    four rotations by 0, 90, 180 and 270 degrees. Rotating the input by 90
    degrees rotates every output map by 90 degrees and shifts the rotation
    index cyclically by one. This holds exactly for square kernels with
    `padding="valid"` (or `"same"` with an odd kernel), `strides=1` and square
    inputs.

    Args:
        filters: number of learned filters; the output has `4 * filters` channels.
        kernel_size: int or square (k, k) tuple.
        strides: int or pair. Only stride 1 is exactly equivariant.
        padding: "valid" or "same".
        activation: optional activation applied after the bias.
        use_bias: one bias per filter, shared by its four rotations.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer:
            as in `keras.layers.Conv2D`.

    Input shape:
        4D tensor `(batch, height, width, channels)`.

    Output shape:
        4D tensor `(batch, new_height, new_width, 4 * filters)`; channel
        `c * 4 + r` holds filter `c` at rotation `r` (GrouPy's layout).

    Example:

    >>> x = np.random.rand(2, 28, 28, 1).astype("float32")
    >>> tuple(P4ConvZ2(10, 3)(x).shape)
    (2, 26, 26, 40)
    """

    _group = "p4"
    _input_is_group = False
