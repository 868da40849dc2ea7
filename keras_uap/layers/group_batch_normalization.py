import keras
from keras import ops

from keras_uap.layers.p4_ops import GROUP_ORDERS, check_group_channels, group_elements


@keras.saving.register_keras_serializable(package="keras_uap")
class GroupBatchNormalization(keras.layers.Layer):
    """Batch normalisation of a p4 or p4m feature map, one statistic per feature.

    As `keras.layers.BatchNormalization` on the channels, except that the
    mean, variance, `gamma` and `beta` of feature `c` are shared by its `G`
    group copies (channels `c * G + t`): the statistics are taken over
    batch, height, width AND the group axis. A per-channel statistic would
    differ between the copies of one feature, and a rotated input would then
    be normalised differently; shared, they are invariant to moving the
    input by any group element, so the layer commutes with the group action
    in training and in inference mode.

    In training the batch statistics are used and the running ones updated
    (`moving = momentum * moving + (1 - momentum) * batch`); in inference
    (or when the layer is frozen, `trainable=False`) the running ones.

    Args:
        group: "p4" (`G` = 4) or "p4m" (`G` = 8).
        momentum: momentum of the running mean and variance.
        epsilon: added to the variance before the square root.
        center: learn `beta` (one per feature); otherwise 0.
        scale: learn `gamma` (one per feature); otherwise 1.
        beta_initializer, gamma_initializer, moving_mean_initializer,
            moving_variance_initializer, beta_regularizer, gamma_regularizer:
            as in `keras.layers.BatchNormalization`.

    Input shape:
        4D tensor `(batch, height, width, G * C)` in GrouPy's layout.

    Output shape:
        Same as the input.

    Example:

    >>> x = np.random.rand(2, 6, 6, 40).astype("float32")
    >>> tuple(GroupBatchNormalization("p4")(x, training=True).shape)
    (2, 6, 6, 40)
    """

    def __init__(
        self,
        group="p4",
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        group_elements(group)  # validates `group`
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"`momentum` must be in [0, 1]. Received: momentum={momentum}")
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be positive. Received: epsilon={epsilon}")
        self.group = group
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.moving_mean_initializer = keras.initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = keras.initializers.get(moving_variance_initializer)
        self.beta_regularizer = keras.regularizers.get(beta_regularizer)
        self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        features = check_group_channels("GroupBatchNormalization", input_shape, self.group)
        if self.scale:
            self.gamma = self.add_weight(name="gamma", shape=(features,), initializer=self.gamma_initializer,
                                         regularizer=self.gamma_regularizer)
        if self.center:
            self.beta = self.add_weight(name="beta", shape=(features,), initializer=self.beta_initializer,
                                        regularizer=self.beta_regularizer)
        self.moving_mean = self.add_weight(name="moving_mean", shape=(features,),
                                           initializer=self.moving_mean_initializer, trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=(features,),
                                               initializer=self.moving_variance_initializer, trainable=False)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: input_shape[-1]})

    def call(self, inputs, training=None):
        order = GROUP_ORDERS[self.group]
        shape = ops.shape(inputs)
        grouped = ops.reshape(inputs, (shape[0], shape[1], shape[2], inputs.shape[-1] // order, order))
        if training and self.trainable:
            mean, variance = ops.moments(grouped, axes=(0, 1, 2, 4))
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
                batch = ops.cast(ops.stop_gradient(batch), moving.dtype)
                moving.assign(self.momentum * moving + (1.0 - self.momentum) * batch)
        else:
            mean = ops.cast(self.moving_mean, inputs.dtype)
            variance = ops.cast(self.moving_variance, inputs.dtype)
        factor = ops.rsqrt(variance + self.epsilon)
        if self.scale:
            factor = factor * ops.cast(self.gamma, inputs.dtype)
        offset = -mean * factor
        if self.center:
            offset = offset + ops.cast(self.beta, inputs.dtype)
        outputs = grouped * factor[:, None] + offset[:, None]
        return ops.reshape(outputs, shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "group": self.group,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "beta_initializer": keras.initializers.serialize(self.beta_initializer),
                "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": keras.initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": keras.initializers.serialize(self.moving_variance_initializer),
                "beta_regularizer": keras.regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": keras.regularizers.serialize(self.gamma_regularizer),
            }
        )
        return config
