import keras

from keras_uap.layers.base_p4_conv import GROUP_ORDER


@keras.saving.register_keras_serializable(package="keras_uap")
class GroupSpatialMaxPooling2D(keras.layers.MaxPooling2D):
    """Spatial max pooling of a p4 feature map that keeps the group axis.

    The paper's "group spatial max pooling": each of the `4 * C` channels is
    pooled over space on its own, so the rotation index of every channel is
    kept. With `pool_size == strides` dividing an even input size it commutes
    exactly with 90 degree rotations.

    Args:
        pool_size, strides, padding: as in `keras.layers.MaxPooling2D`.
        data_format: channels-last only (None or "channels_last"; anything
            else is an error, since the group axis is folded into the
            channels as `c * 4 + r`).

    Input shape:
        4D tensor `(batch, height, width, 4 * C)`.

    Output shape:
        4D tensor `(batch, pooled_height, pooled_width, 4 * C)`.

    Example:

    >>> x = np.random.rand(2, 24, 24, 40).astype("float32")
    >>> tuple(GroupSpatialMaxPooling2D(2)(x).shape)
    (2, 12, 12, 40)
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        if data_format not in (None, "channels_last"):
            raise ValueError(f"GroupSpatialMaxPooling2D is channels-last only. Received: data_format={data_format}")
        super().__init__(
            pool_size=pool_size, strides=strides, padding=padding, data_format="channels_last", **kwargs
        )

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % GROUP_ORDER:
            raise ValueError(
                "GroupSpatialMaxPooling2D expects a p4 feature map whose channel axis is a "
                f"multiple of {GROUP_ORDER}. Received: input_shape={tuple(input_shape)}"
            )
        super().build(input_shape)
