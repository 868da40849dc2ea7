import keras
from keras import ops

from keras_uap.layers.vector_ops import check_vector_channels, safe_sqrt, squared_magnitude


@keras.saving.register_keras_serializable(package="keras_uap")
class VectorBatchNorm(keras.layers.Layer):
    """Batch normalisation of a vector field's magnitudes (RotEqNet).

    Each vector map `f` is multiplied by `gamma_f / sqrt(var_f + epsilon)`,
    a positive per-map scale, so directions are kept and nothing is
    shifted (a shift would not commute with rotations, and could make
    magnitudes negative). `var_f` is a second moment of the magnitudes
    `m = sqrt(x^2 + y^2)` over batch, height and width:

    - `centered=False` (default, as in the original code): `mean(m^2)`, the
      variance of the field taken as zero-mean (its "std" is the RMS magnitude);
    - `centered=True`: `mean((m - mean(m))^2)`, the variance of the magnitude.

    In training the batch statistic is used and the running `moving_variance`
    is updated (`moving = momentum * moving + (1 - momentum) * batch`); in
    inference `moving_variance` is used. Both are rotation invariant, so the
    layer commutes with rotating the field.

    Vector-field layout: `(batch, height, width, 2 * F)`, channel `2 f` the
    x-component (along the columns, positive to the right), `2 f + 1` the
    y-component (along the rows, positive UP, i.e. towards row 0).

    Args:
        momentum: momentum of the running variance.
        epsilon: added to the variance before the square root; positive and finite.
        centered: which second moment, see above.
        scale: learn `gamma` (one per vector map); otherwise `gamma = 1`.
        gamma_initializer, gamma_regularizer: for `gamma`.
        moving_variance_initializer: for the running variance.

    Input shape:
        4D vector field `(batch, height, width, 2 * F)`.

    Output shape:
        Same as the input.

    Example:

    >>> v = np.random.rand(2, 7, 7, 12).astype("float32")
    >>> tuple(VectorBatchNorm()(v, training=True).shape)
    (2, 7, 7, 12)
    """

    def __init__(
        self,
        momentum=0.99,
        epsilon=1e-5,
        centered=False,
        scale=True,
        gamma_initializer="ones",
        gamma_regularizer=None,
        moving_variance_initializer="ones",
        **kwargs,
    ):
        super().__init__(**kwargs)
        momentum, epsilon = float(momentum), float(epsilon)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={momentum}")
        if not 0.0 < epsilon < float("inf"):  # also rejects NaN
            raise ValueError(f"`epsilon` must be positive. Received: epsilon={epsilon}")
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = bool(centered)
        self.scale = bool(scale)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)
        self.moving_variance_initializer = keras.initializers.get(moving_variance_initializer)
        self.supports_masking = True
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        fields = check_vector_channels("VectorBatchNorm", input_shape)
        if self.scale:
            self.gamma = self.add_weight(
                name="gamma",
                shape=(fields,),
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
            )
        self.moving_variance = self.add_weight(
            name="moving_variance",
            shape=(fields,),
            initializer=self.moving_variance_initializer,
            trainable=False,
        )
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: input_shape[-1]})

    def batch_variance(self, inputs):
        """The per-map second moment of the magnitudes of `inputs`, shape (F,)."""
        squared = squared_magnitude(inputs)
        if not self.centered:
            return ops.mean(squared, axis=(0, 1, 2))
        magnitude = safe_sqrt(squared)
        mean = ops.mean(magnitude, axis=(0, 1, 2))
        return ops.mean(ops.square(magnitude - mean), axis=(0, 1, 2))

    def call(self, inputs, training=None):
        if training and self.trainable:
            variance = self.batch_variance(inputs)
            self.moving_variance.assign(
                self.momentum * self.moving_variance
                + (1.0 - self.momentum) * ops.cast(ops.stop_gradient(variance), self.moving_variance.dtype)
            )
        else:
            variance = ops.cast(self.moving_variance, inputs.dtype)
        factor = ops.rsqrt(variance + self.epsilon)
        if self.scale:
            factor = factor * ops.cast(self.gamma, inputs.dtype)
        return inputs * ops.repeat(factor, 2)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "centered": self.centered,
                "scale": self.scale,
                "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
                "gamma_regularizer": keras.regularizers.serialize(self.gamma_regularizer),
                "moving_variance_initializer": keras.initializers.serialize(self.moving_variance_initializer),
            }
        )
        return config
