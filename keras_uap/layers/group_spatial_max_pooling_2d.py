import keras

from keras_uap.layers.p4_ops import check_group_channels, group_elements


@keras.saving.register_keras_serializable(package="keras_uap")
class GroupSpatialMaxPooling2D(keras.layers.MaxPooling2D):
    """Spatial max pooling of a p4 or p4m feature map that keeps the group axis.

    The paper's "group spatial max pooling": each of the `G * C` channels is
    pooled over space on its own, so the group index of every channel is
    kept. With `pool_size == strides` dividing an even input size it commutes
    exactly with 90 degree rotations (and, for p4m, mirror images).

    Args:
        pool_size, strides, padding: as in `keras.layers.MaxPooling2D`.
        data_format: channels-last only (None or "channels_last"; anything
            else is an error, since the group axis is folded into the
            channels as `c * G + t`).
        group: "p4" (`G` = 4) or "p4m" (`G` = 8); only checks the channel axis.

    Input shape:
        4D tensor `(batch, height, width, G * C)`.

    Output shape:
        4D tensor `(batch, pooled_height, pooled_width, G * C)`.

    Example:

    >>> x = np.random.rand(2, 24, 24, 40).astype("float32")
    >>> tuple(GroupSpatialMaxPooling2D(2)(x).shape)
    (2, 12, 12, 40)
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, group="p4", **kwargs):
        if data_format not in (None, "channels_last"):
            raise ValueError(f"GroupSpatialMaxPooling2D is channels-last only. Received: data_format={data_format}")
        group_elements(group)  # validates `group`
        super().__init__(
            pool_size=pool_size, strides=strides, padding=padding, data_format="channels_last", **kwargs
        )
        self.group = group

    def build(self, input_shape):
        check_group_channels("GroupSpatialMaxPooling2D", input_shape, self.group)
        super().build(input_shape)

    def get_config(self):
        config = super().get_config()
        config["group"] = self.group
        return config
