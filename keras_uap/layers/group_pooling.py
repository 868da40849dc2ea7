import keras
from keras import ops

from keras_uap.layers.base_p4_conv import GROUP_ORDER

_MODES = ("max", "mean")


@keras.saving.register_keras_serializable(package="keras_uap")
class GroupPooling(keras.layers.Layer):
    """Pools a p4 feature map over its four rotations.

    The result is invariant to the rotation index: rotating the input of a
    p4 network by 90 degrees rotates these maps spatially and nothing else.

    Args:
        mode: "max" or "mean" over the four rotations.

    Input shape:
        4D tensor `(batch, height, width, 4 * C)` in GrouPy's layout
        (channel `c * 4 + r`).

    Output shape:
        4D tensor `(batch, height, width, C)`.

    Example:

    >>> x = np.random.rand(2, 4, 4, 80).astype("float32")
    >>> tuple(GroupPooling("max")(x).shape)
    (2, 4, 4, 20)
    """

    def __init__(self, mode="max", **kwargs):
        super().__init__(**kwargs)
        if mode not in _MODES:
            raise ValueError(f"`mode` must be one of {_MODES}. Received: mode={mode}")
        self.mode = mode
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % GROUP_ORDER:
            raise ValueError(
                "GroupPooling expects a p4 feature map whose channel axis is a multiple of "
                f"{GROUP_ORDER}. Received: input_shape={tuple(input_shape)}"
            )

    def call(self, inputs):
        shape = ops.shape(inputs)
        grouped = ops.reshape(inputs, (-1, shape[1], shape[2], inputs.shape[-1] // GROUP_ORDER, GROUP_ORDER))
        if self.mode == "max":
            return ops.max(grouped, axis=-1)
        return ops.mean(grouped, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] // GROUP_ORDER,)

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config
