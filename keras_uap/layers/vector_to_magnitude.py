import keras

from keras_uap.layers.vector_ops import check_vector_channels, safe_sqrt, squared_magnitude


@keras.saving.register_keras_serializable(package="keras_uap")
class Vector2Magnitude(keras.layers.Layer):
    """Magnitudes of a vector field: rotation-invariant scalar maps (RotEqNet).

    `sqrt(x^2 + y^2)` per vector map, with a finite gradient at zero vectors
    (below a squared magnitude of 1e-12 the value is under 1e-6; see
    `keras_uap.layers.vector_ops.safe_sqrt`). Rotating the input field
    (positions and vectors) rotates these maps spatially and nothing else.

    Vector-field layout: `(batch, height, width, 2 * F)`, channel `2 f` the
    x-component (along the columns, positive to the right), `2 f + 1` the
    y-component (along the rows, positive UP, i.e. towards row 0).

    Input shape:
        4D vector field `(batch, height, width, 2 * F)`.

    Output shape:
        4D tensor `(batch, height, width, F)`; channel `f` is the magnitude
        of vector map `f`.

    Example:

    >>> v = np.random.rand(2, 7, 7, 12).astype("float32")
    >>> tuple(Vector2Magnitude()(v).shape)
    (2, 7, 7, 6)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        check_vector_channels("Vector2Magnitude", input_shape)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: input_shape[-1]})

    def call(self, inputs):
        return safe_sqrt(squared_magnitude(inputs))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] // 2,)

    def get_config(self):
        return super().get_config()
