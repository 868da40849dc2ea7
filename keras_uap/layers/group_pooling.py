import keras
from keras import ops

from keras_uap.layers.p4_ops import GROUP_ORDERS, check_group_channels, group_elements

_MODES = ("max", "mean")


@keras.saving.register_keras_serializable(package="keras_uap")
class GroupPooling(keras.layers.Layer):
    """Pools a p4 (or p4m) feature map over its group axis.

    The result is invariant to the group index: rotating (or mirroring) the
    input of a p4 (p4m) network rotates (mirrors) these maps spatially and
    nothing else.

    Args:
        mode: "max" or "mean" over the group elements.
        group: "p4" (4 rotations) or "p4m" (8: rotations and mirror images).

    Input shape:
        4D tensor `(batch, height, width, G * C)` in GrouPy's layout
        (channel `c * G + t`, `G` = 4 for p4, 8 for p4m).

    Output shape:
        4D tensor `(batch, height, width, C)`.

    Example:

    >>> x = np.random.rand(2, 4, 4, 80).astype("float32")
    >>> tuple(GroupPooling("max")(x).shape)
    (2, 4, 4, 20)
    """

    def __init__(self, mode="max", group="p4", **kwargs):
        super().__init__(**kwargs)
        if mode not in _MODES:
            raise ValueError(f"`mode` must be one of {_MODES}. Received: mode={mode}")
        group_elements(group)  # validates `group`
        self.mode = mode
        self.group = group
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        check_group_channels("GroupPooling", input_shape, self.group)

    def call(self, inputs):
        shape = ops.shape(inputs)
        order = GROUP_ORDERS[self.group]
        grouped = ops.reshape(inputs, (-1, shape[1], shape[2], inputs.shape[-1] // order, order))
        if self.mode == "max":
            return ops.max(grouped, axis=-1)
        return ops.mean(grouped, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] // GROUP_ORDERS[self.group],)

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "group": self.group})
        return config
