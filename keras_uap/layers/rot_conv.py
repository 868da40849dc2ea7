import functools

import numpy as np

import keras
from keras import ops

from keras_uap.layers.base_group_conv import BaseGroupConv
from keras_uap.layers.conv_args import positive_int
from keras_uap.layers.vector_ops import (
    check_vector_channels,
    component_rotations,
    direction_table,
    disk_mask,
    disk_pixels,
    rotation_transforms,
)

_MODES = ("scalar", "vector")

def _bilinear_weights(transform, size):
    """(size * size, size * size) matrix: row `i * size + j` holds the weights
    with which output pixel (i, j) of the projective `transform` (as in
    `keras.ops.image.affine_transform`: it samples the input at
    `(a0 j + a1 i + a2, b0 j + b1 i + b2)`, column then row) reads the input
    pixels, bilinear, with zeros outside the input (constant fill 0)."""
    a0, a1, a2, b0, b1, b2 = np.asarray(transform[:6], dtype=np.float64)
    rows, cols = np.mgrid[0:size, 0:size]
    x, y = a0 * cols + a1 * rows + a2, b0 * cols + b1 * rows + b2
    x0, y0 = np.floor(x), np.floor(y)
    weights = np.zeros((size * size, size * size))
    out = np.arange(size * size).reshape(size, size)
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        row, col = y0 + dy, x0 + dx
        weight = (1 - np.abs(y - row)) * (1 - np.abs(x - col))
        inside = (row >= 0) & (row < size) & (col >= 0) & (col < size) & (weight > 0)
        np.add.at(weights, (out[inside], (row * size + col)[inside].astype(int)), weight[inside])
    return weights


@functools.lru_cache(maxsize=None)
def _spatial_rotation_operator(n_angles, size):
    """(n_angles, size * size, size * size) float32 array `T` with
    `T[a, i * size + j, p]` the weight of filter pixel `p` (row-major) in pixel
    (i, j) of the filter rotated to orientation `a`, disk masks included.

    The bilinear rotation of `keras.ops.image.affine_transform` (constant 0
    fill, the transforms of `rotation_transforms`) written as a matrix, in
    NumPy, so that it is computed once, on any backend and in no trace; the
    tests check it against that op. The interpolation is linear in the
    image, so `T` applied to a filter equals rotating the filter.
    """
    mask = disk_mask(size).reshape(-1)
    operator = np.stack([_bilinear_weights(t, size) for t in rotation_transforms(n_angles, size)])
    operator = (operator * mask[None, :, None] * mask[None, None, :]).astype("float32")
    operator.flags.writeable = False
    return operator


@functools.lru_cache(maxsize=None)
def _bank_operator(n_angles, size, vector):
    """The rotation as one matrix acting on the disk pixels of the filter.

    Returns `(disk, matrix)`: `disk` the row-major indices of the
    `D` pixels inside the disk mask (the only inputs with non-zero weight and
    the only non-zero outputs), `matrix` of shape `(D, D * n_angles)` for
    "scalar" (row `d`, column `(i, a)`: weight of input disk pixel `d` in
    output disk pixel `i` at orientation `a`), or `(2 D, D * 2 * n_angles)`
    for "vector" (row `(q, d)`, column `(i, p, a)`, folding in the component
    rotation `R(alpha_a)[p, q]`).
    """
    operator = _spatial_rotation_operator(n_angles, size)  # (a, ij, p)
    disk = disk_pixels(size)
    outside = np.setdiff1d(np.arange(size * size), disk)
    assert not operator[:, :, outside].any() and not operator[:, outside, :].any()
    sub = operator[:, disk][:, :, disk]  # (a, i, d)
    if vector:
        rotations = component_rotations(n_angles).astype("float64")  # (a, p, q)
        matrix = np.einsum("aid,apq->qdipa", sub.astype("float64"), rotations)
        matrix = matrix.reshape(2 * len(disk), len(disk) * 2 * n_angles)
    else:
        matrix = sub.transpose(2, 1, 0).reshape(len(disk), len(disk) * n_angles)
    matrix = np.ascontiguousarray(matrix, dtype="float32")
    matrix.flags.writeable = False
    return disk, matrix


@functools.lru_cache(maxsize=None)
def _bank_rows_operator(n_angles, size, vector, orientation_major):
    """`_bank_operator`'s matrix transposed, `(D * n_angles, D)` ("scalar")
    or `(2 D * n_angles, 2 D)` ("vector"): its product with the learned
    filters' disk pixels is the bank, one row per rotated disk pixel, in the
    order `(i, a)` / `(i, p, a)`, or `(a, i)` / `(a, i, p)` (orientation
    first) if `orientation_major`. Transposed once here, not per call."""
    disk, matrix = _bank_operator(n_angles, size, vector)
    if orientation_major:
        parts = 2 if vector else 1
        matrix = matrix.reshape(matrix.shape[0], len(disk), parts, n_angles).transpose(0, 3, 1, 2)
        matrix = matrix.reshape(matrix.shape[0], -1)
    rows = np.ascontiguousarray(matrix.T)
    rows.flags.writeable = False
    return rows


@keras.saving.register_keras_serializable(package="keras_uap")
class RotConv(BaseGroupConv):
    """Rotating convolution with orientation pooling (RotEqNet, Marcos et al., ICCV 2017).

    Each of the `filters` learned filters is masked to the disk inscribed in
    its `k x k` window and rotated to `n_angles` orientations
    `alpha_a = 360 * a / n_angles` degrees (counter-clockwise on screen),
    `a = 0 .. n_angles - 1`, by bilinear interpolation
    (`keras.ops.image.affine_transform`); the rotated copies are masked to
    the disk again. Masking, interpolation and (in "vector" mode) the
    rotation of the components are linear in the filter, so they are
    computed once, on the first build for each `(n_angles, k, mode)`, as one
    constant matrix (that interpolation written out in NumPy, checked against
    the op by the tests; not a weight, so it is neither saved nor in the
    config); each call
    rebuilds the bank from the learned filter with ONE matrix product over
    the disk pixels (equal to rotating the filter, to float rounding, and
    differentiated exactly). Orientation pooling then keeps, per pixel and
    filter, the largest response `s` over the orientations and its angle
    `alpha_a*` (the first one on ties; the gradient of `s` is split equally
    among tied maxima, as for `max`), and outputs the vector
    `relu(s + b) * (cos alpha_a*, sin alpha_a*)` (`b` one bias per filter,
    shared by its orientations).

    Backends: on JAX (any backend but TensorFlow) the responses are one
    `keras.ops.conv` with the `filters * n_angles` oriented filters, then a
    max and an arg-max over the orientations. On TensorFlow a faster path gives the same
    numbers to float rounding (`rot_conv_tensorflow.py`): with few input
    channels the bank's rows times the disk pixels of every input window as
    columns, i.e. a convolution that skips the zero weights outside the disk
    (49 of 81 for k = 9); with more channels one convolution with
    `rotated_filter_bank`; then the pooling as one XLA kernel forward and
    one backward (first-order gradients only there).

    Vector-field layout (input in "vector" mode, and always the output):
    `(batch, height, width, 2 * F)`, channel `2 f` the x-component (along the
    columns, positive to the right) and `2 f + 1` the y-component (along the
    rows, positive UP, i.e. towards row 0); angles are counter-clockwise on
    screen from +x.

    Modes:
        "scalar": the input is an ordinary image `(N, H, W, C)`; response
            `sum_c I_c * rot_alpha(w_c)` (`*` = cross-correlation).
        "vector": the input is a vector field `(N, H, W, 2 C)`; the filter
            is itself a vector field with components `(u_c, v_c)` (kernel
            input channels `2 c`, `2 c + 1`). For orientation `alpha` both
            components are rotated spatially and then as a vector,
            `(u', v') = R(alpha) (rot_alpha(u), rot_alpha(v))`, and the
            response is `sum_c x_c * u'_c + y_c * v'_c`.

    Equivariance: rotating the input by `360 * m / n_angles` degrees (m an
    integer) rotates the output field (positions and vectors) by the same
    angle. Exactly so, up to float rounding, for rotations by multiples of
    90 degrees when `n_angles` is a multiple of 4 (measured max error
    <= 6.4e-7 of the largest output for n_angles 4 and 8), with odd `k`,
    `strides=1` and square inputs. For other angles, e.g. 90 degrees with
    the default `n_angles=17` (4.25 steps of 21.2 degrees), the winning
    orientation of the rotated input lands a quarter, half or three-quarter
    step from the rotated winner, and the bilinear filter copies differ
    (orientation 0 is never interpolated, so it is sharper and wins more
    often than 1/17 with random filters). Measured on 21 x 21 smooth noise
    images, rotations by 90/180/270 degrees, 8 seeds (relative L2 errors):
    magnitudes 0.05 (max 0.07) with smooth single-lobed filters and 0.12
    (max 0.19) with random 7x7 filters; the whole field 0.22 (max 0.24)
    with single-lobed filters, but 0.55 (max 0.95) with random filters,
    whose multi-lobed orientation response lets the winner jump between
    lobes (up to 180 degrees); see `tests/test_vector_layers.py`.

    Args:
        filters: number of learned filters `F`; the output has `2 * F` channels.
        kernel_size: int or square (k, k) tuple; odd k keeps "same" padding
            equivariant.
        n_angles: number of orientations (>= 1) evenly spread over 360 degrees.
        mode: "scalar" (image input) or "vector" (vector-field input).
        strides: int or pair. Only stride 1 is exactly equivariant.
        padding: "same" or "valid".
        use_bias: one bias per filter, added to all its orientations before
            the max and the ReLU of the magnitude.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer:
            as in `keras.layers.Conv2D`.

    Input shape:
        "scalar": 4D tensor `(batch, height, width, channels)`.
        "vector": 4D tensor `(batch, height, width, 2 * C)` in the layout above.

    Output shape:
        4D vector field `(batch, new_height, new_width, 2 * filters)`.

    Example:

    >>> x = np.random.rand(2, 28, 28, 1).astype("float32")
    >>> v = RotConv(6, 9, n_angles=17)(x)
    >>> tuple(v.shape)
    (2, 28, 28, 12)
    >>> tuple(RotConv(4, 5, mode="vector", padding="valid")(v).shape)
    (2, 24, 24, 8)
    """

    _square_kernel_reason = "the filter is rotated about its centre"

    def __init__(
        self,
        filters,
        kernel_size,
        n_angles=17,
        mode="scalar",
        strides=1,
        padding="same",
        use_bias=True,
        kernel_initializer="he_normal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        n_angles = positive_int(n_angles, "n_angles")
        if mode not in _MODES:
            raise ValueError(f"`mode` must be one of {_MODES}. Received: mode={mode}")
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            **kwargs,
        )
        self.n_angles = n_angles
        self.mode = mode

    def _input_channels(self, input_shape):
        # In "vector" mode input channel 2c holds u_c (weights of the x-component)
        # and 2c + 1 holds v_c (weights of the y-component).
        if self.mode == "vector":
            check_vector_channels("RotConv(mode='vector')", input_shape)
        elif input_shape[-1] is None:
            raise ValueError(f"RotConv needs a known channel axis. Received: input_shape={tuple(input_shape)}")
        return input_shape[-1]

    def _output_channels(self):
        return 2 * self.filters

    def build(self, input_shape):
        super().build(input_shape)
        # The rotation matrix: computed (cached per configuration) here, not per call.
        _bank_operator(self.n_angles, self.kernel_size[0], self.mode == "vector")

    def _disk_filters(self):
        """The learned filters' disk pixels as the rows the rotation matrix acts
        on: `(D, C_in * F)` in "scalar" mode; `(2 D, C_in / 2 * F)` in "vector"
        mode, rows `(q, d)` (component q of input vector channel c, which the
        matrix mixes), columns `(c, f)`."""
        k = self.kernel_size[0]
        kernel = ops.convert_to_tensor(self.kernel)
        channels, filters = kernel.shape[2], kernel.shape[3]
        disk, _ = _bank_operator(self.n_angles, k, self.mode == "vector")
        size = len(disk)
        # Only the disk pixels of the filter are read, and only those of the bank are non-zero.
        inside = ops.take(ops.reshape(kernel, (k * k, channels, filters)), disk, axis=0)  # (D, C_in, F)
        if self.mode == "vector":
            inside = ops.transpose(ops.reshape(inside, (size, channels // 2, 2, filters)), (2, 0, 1, 3))
            return ops.reshape(inside, (2 * size, channels // 2 * filters))
        return ops.reshape(inside, (size, channels * filters))

    def rotated_filter_bank(self):
        """The oriented filters as a convolution kernel `(k, k, C_in, n_angles * filters)`.

        Output channel `a * filters + f` is filter `f` at orientation
        `alpha_a = 360 * a / n_angles` degrees (orientation-major). A
        `Conv2D` with this kernel gives RotConv's responses before the
        orientation pooling.
        """
        k = self.kernel_size[0]
        n = self.n_angles
        channels, filters = self.kernel.shape[2], self.kernel.shape[3]
        disk, _ = _bank_operator(n, k, self.mode == "vector")
        size = len(disk)
        # Rows (i[, p], a) of the rotated disk pixels, columns (c, f).
        operator = ops.convert_to_tensor(_bank_rows_operator(n, k, self.mode == "vector", False))
        bank = ops.matmul(operator, self._disk_filters())
        if self.mode == "vector":
            bank = ops.transpose(ops.reshape(bank, (size, 2, n, channels // 2, filters)), (0, 3, 1, 2, 4))
        else:
            bank = ops.transpose(ops.reshape(bank, (size, n, channels, filters)), (0, 2, 1, 3))
        bank = ops.reshape(bank, (size, channels, n * filters))
        bank = ops.scatter(disk[:, None].astype("int32"), bank, (k * k, channels, n * filters))
        return ops.reshape(bank, (k, k, channels, n * filters))

    def orientation_major_bank(self):
        """The bank over the disk pixels: `(n_angles, D * C_in, F)`, per
        orientation the rows `(i[, p], c)` (disk pixel, [vector component,]
        input channel) by the filters. Built from the same matrix as
        `rotated_filter_bank` with its columns reordered, so it needs no
        transpose and no scatter into k x k."""
        k, n = self.kernel_size[0], self.n_angles
        vector = self.mode == "vector"
        disk, _ = _bank_operator(n, k, vector)
        # Rows (a, i[, p]), columns (c, f).
        operator = ops.convert_to_tensor(_bank_rows_operator(n, k, vector, True))
        bank = ops.matmul(operator, self._disk_filters())
        return ops.reshape(bank, (n, len(disk) * self.kernel.shape[2], self.filters))

    def pooled_field_by_convolution(self, inputs):
        """The layer's output on any backend: one convolution with
        `rotated_filter_bank`, then the orientation pooling as a max and an
        arg-max over the orientations."""
        responses = ops.conv(inputs, self.rotated_filter_bank(), strides=self.strides, padding=self.padding,
                             data_format="channels_last")
        shape = ops.shape(responses)
        if responses.shape[0] == 0:  # an empty batch: Keras' torch `max` refuses empty tensors
            return ops.zeros((0, shape[1], shape[2], 2 * self.filters), responses.dtype)
        responses = ops.reshape(responses, (shape[0], shape[1], shape[2], self.n_angles, self.filters))
        strength = ops.max(responses, axis=3)
        if self.use_bias:
            strength = strength + ops.cast(self.bias, strength.dtype)
        directions = ops.convert_to_tensor(direction_table(self.n_angles), dtype=strength.dtype)
        field = ops.expand_dims(ops.relu(strength), -1) * ops.take(directions, ops.argmax(responses, axis=3), axis=0)
        return ops.reshape(field, (shape[0], shape[1], shape[2], 2 * self.filters))

    def call(self, inputs):
        if keras.backend.backend() == "tensorflow":
            from keras_uap.layers.rot_conv_tensorflow import pooled_field

            return pooled_field(self, inputs)
        return self.pooled_field_by_convolution(inputs)

    def get_config(self):
        config = super().get_config()
        config.update({"n_angles": self.n_angles, "mode": self.mode})
        return config
