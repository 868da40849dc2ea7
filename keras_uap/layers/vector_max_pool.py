import keras
from keras import ops

from keras_uap.layers.conv_args import check_window_fits, conv_output_length, padding_mode, positive_int_pair
from keras_uap.layers.vector_ops import check_vector_channels, merge_vector_field


@keras.saving.register_keras_serializable(package="keras_uap")
class VectorMaxPool(keras.layers.Layer):
    """Spatial max pooling of a vector field by magnitude (RotEqNet).

    In each pooling window and for each vector map `f`, keeps the whole
    vector `(x, y)` of largest magnitude (the first one in row-major window
    order on exact ties). Directions are kept, so pooling commutes with
    rotating the field by multiples of 90 degrees (exactly, see the tests)
    whenever the windows cover a square input symmetrically: square windows
    and strides with no leftover rows/columns, i.e. `(H - pool) % stride == 0`
    for "valid" (e.g. 2x2 windows on an even size).

    Vector-field layout: `(batch, height, width, 2 * F)`, channel `2 f` the
    x-component (along the columns, positive to the right), `2 f + 1` the
    y-component (along the rows, positive UP, i.e. towards row 0).

    Args:
        pool_size: int or pair, the window size.
        strides: int, pair or None (default: `pool_size`).
        padding: "valid" or "same" (zero vectors are padded; they never win
            over a non-zero vector).

    Input shape:
        4D vector field `(batch, height, width, 2 * F)`.

    Output shape:
        4D vector field `(batch, pooled_height, pooled_width, 2 * F)`.

    Example:

    >>> v = np.random.rand(2, 28, 28, 12).astype("float32")
    >>> tuple(VectorMaxPool(2)(v).shape)
    (2, 14, 14, 12)
    """

    def __init__(self, pool_size=2, strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = positive_int_pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else positive_int_pair(strides, "strides")
        self.padding = padding_mode(padding)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        check_vector_channels("VectorMaxPool", input_shape)
        check_window_fits("VectorMaxPool", input_shape, self.pool_size, self.padding)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: input_shape[-1]})

    def _windows(self, inputs):
        """(N, H', W', ph * pw, F, 2): the vectors of each window, row-major."""
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        fields = inputs.shape[-1] // 2
        if (sh, sw) != (ph, pw):
            # Overlapping or gapped windows: one patch extraction.
            patches = ops.image.extract_patches(
                inputs, (ph, pw), strides=(sh, sw), padding=self.padding, data_format="channels_last"
            )
            shape = ops.shape(patches)
            return ops.reshape(patches, (shape[0], shape[1], shape[2], ph * pw, fields, 2))
        # Non-overlapping windows: crop or pad, then a reshape and a transpose.
        shape = ops.shape(inputs)
        height = shape[1] if inputs.shape[1] is None else inputs.shape[1]
        width = shape[2] if inputs.shape[2] is None else inputs.shape[2]
        out_h = conv_output_length(height, ph, sh, self.padding)
        out_w = conv_output_length(width, pw, sw, self.padding)
        if self.padding == "valid":
            inputs = inputs[:, : out_h * ph, : out_w * pw, :]
        else:
            # TensorFlow's "same": the extra row/column goes at the end.
            pad_h, pad_w = out_h * ph - height, out_w * pw - width
            inputs = ops.pad(inputs, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                                      (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
        grouped = ops.reshape(inputs, (shape[0], out_h, ph, out_w, pw, fields, 2))
        grouped = ops.transpose(grouped, (0, 1, 3, 2, 4, 5, 6))
        return ops.reshape(grouped, (shape[0], out_h, out_w, ph * pw, fields, 2))

    def call(self, inputs):
        windows = self._windows(inputs)
        squared = ops.sum(ops.square(windows), axis=-1)  # (N, H', W', P, F)
        winner = ops.one_hot(ops.argmax(squared, axis=3), windows.shape[3], axis=3, dtype=windows.dtype)
        return merge_vector_field(ops.sum(windows * ops.expand_dims(winner, -1), axis=3))

    def compute_output_shape(self, input_shape):
        check_window_fits("VectorMaxPool", input_shape, self.pool_size, self.padding)
        batch, height, width, channels = input_shape
        return (
            batch,
            conv_output_length(height, self.pool_size[0], self.strides[0], self.padding),
            conv_output_length(width, self.pool_size[1], self.strides[1], self.padding),
            channels,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"pool_size": self.pool_size, "strides": self.strides, "padding": self.padding})
        return config
