import functools

import numpy as np
import tensorflow as tf

import keras
from keras import ops

from keras_uap.layers.conv_args import (
    check_window_fits,
    conv_output_length,
    padding_mode,
    positive_int,
    positive_int_pair,
    square_kernel_size,
)
from keras_uap.layers.disk_windows import disk_pixels, disk_window_columns
from keras_uap.layers.orientation_pooling import orientation_pooled_field
from keras_uap.layers.vector_ops import (
    check_vector_channels,
    component_rotations,
    disk_mask,
    rotation_transforms,
)

_MODES = ("scalar", "vector")
_BATCH_MULTIPLE = 16


def _padded_batch(batch):
    """The batch size RotConv computes for `batch` (a scalar int32 tensor):
    the next power of two up to _BATCH_MULTIPLE, the next multiple of it
    beyond (1, 2, 4, 8, 16, 32, 48, ...: at most 2x the work for small
    batches, where it is cheap, and 1 + 15 / batch for larger ones)."""
    powers = tf.constant([0] + [1 << (b - 1).bit_length() for b in range(1, _BATCH_MULTIPLE + 1)])
    return tf.where(batch <= _BATCH_MULTIPLE, tf.gather(powers, tf.minimum(batch, _BATCH_MULTIPLE)),
                    (batch + _BATCH_MULTIPLE - 1) // _BATCH_MULTIPLE * _BATCH_MULTIPLE)


@functools.lru_cache(maxsize=None)
def _spatial_rotation_operator(n_angles, size):
    """(n_angles, size * size, size * size) float32 array `T` with
    `T[a, i * size + j, p]` the weight of filter pixel `p` (row-major) in pixel
    (i, j) of the filter rotated to orientation `a`, disk masks included.

    Obtained by applying the library's bilinear rotation
    (`keras.ops.image.affine_transform`, constant 0 fill, the transforms of
    `rotation_transforms`) to the disk-masked basis images and masking the
    result; the interpolation is linear in the image, so `T` applied to a
    filter equals rotating the filter, up to float rounding. Computed once
    per (n_angles, size), eagerly even when first needed inside a trace.
    """
    pixels = size * size
    mask = disk_mask(size)
    basis = (np.eye(pixels, dtype="float32") * mask.reshape(pixels)).reshape(pixels, size, size)
    images = np.ascontiguousarray(np.broadcast_to(basis.transpose(1, 2, 0)[None], (n_angles, size, size, pixels)))
    with tf.init_scope():
        rotated = ops.image.affine_transform(
            ops.convert_to_tensor(images),
            ops.convert_to_tensor(rotation_transforms(n_angles, size)),
            interpolation="bilinear",
            fill_mode="constant",
            fill_value=0,
            data_format="channels_last",
        )
        rotated = np.asarray(ops.convert_to_numpy(rotated)) * mask[None, :, :, None]
    operator = rotated.reshape(n_angles, pixels, pixels).astype("float32")
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
def _orientation_major_operator(n_angles, size, vector):
    """`_bank_operator`'s matrix with its columns reordered to `(a, i)`
    ("scalar") or `(a, i, p)` ("vector"), orientation first."""
    disk, matrix = _bank_operator(n_angles, size, vector)
    parts = 2 if vector else 1
    reordered = matrix.reshape(matrix.shape[0], len(disk), parts, n_angles).transpose(0, 3, 1, 2)
    reordered = np.ascontiguousarray(reordered.reshape(matrix.shape[0], -1))
    reordered.flags.writeable = False
    return reordered


@tf.custom_gradient
def _per_orientation_products(pixels, bank):
    """`(n, N, F)` products `pixels @ bank[a]` of `pixels` `(N, K)` with each
    orientation's filters `bank` `(n, K, F)`, one batched product.

    The gradient with respect to `pixels` is ONE product with the bank laid
    out `(K, n * F)`: differentiating the broadcast instead would write an
    `(n, N, K)` tensor and sum it over n, which at the attack stages'
    500 images costs more than the forward pass.
    """
    products = tf.matmul(pixels[None], bank)

    def grad(upstream):
        n, k, f = bank.shape
        flat_bank = tf.reshape(tf.transpose(bank, (1, 0, 2)), (k, n * f))
        flat_upstream = tf.reshape(tf.transpose(upstream, (1, 0, 2)), (-1, n * f))
        return (tf.matmul(flat_upstream, flat_bank, transpose_b=True),
                tf.matmul(pixels[None], upstream, transpose_a=True))

    return products, grad


@keras.saving.register_keras_serializable(package="keras_uap")
class RotConv(keras.layers.Layer):
    """Rotating convolution with orientation pooling (RotEqNet, Marcos et al., ICCV 2017).

    Each of the `filters` learned filters is masked to the disk inscribed in
    its `k x k` window and rotated to `n_angles` orientations
    `alpha_a = 360 * a / n_angles` degrees (counter-clockwise on screen),
    `a = 0 .. n_angles - 1`, by bilinear interpolation
    (`keras.ops.image.affine_transform`); the rotated copies are masked to
    the disk again. Masking, interpolation and (in "vector" mode) the
    rotation of the components are linear in the filter, so they are
    computed once, on the first build for each `(n_angles, k, mode)`, as one
    constant matrix (the same interpolation op applied to the basis filters;
    not a weight, so it is neither saved nor in the config); each call
    rebuilds the bank from the learned filter with ONE matrix product over
    the disk pixels (equal to rotating the filter, to float rounding, and
    differentiated exactly), and all `filters * n_angles` oriented filters
    are correlated with the input in ONE matrix product: the bank's rows
    times the disk pixels of every input window as columns
    (`disk_windows.py`, an XLA kernel), i.e. a convolution that skips the
    zero weights outside the disk (49 of 81 for k = 9) and leaves the
    responses orientation first, as the pooling reads them. When the kernel
    covers the whole input ("valid" padding, height = width = k known when
    traced, as in RotEqNet's last layer) the product is one per orientation,
    with the bank in the order built. Orientation pooling
    then keeps, per pixel and filter, the largest response `s` over the
    orientations and its angle `alpha_a*` (the first one on ties; the
    gradient of `s` is split equally among tied maxima, as for `max`), and
    outputs the vector `relu(s + b) * (cos alpha_a*, sin alpha_a*)` (`b` one
    bias per filter, shared by its orientations): one XLA kernel forward,
    one backward (`orientation_pooling.py`), each compiled once per input
    shape; first-order gradients only.

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
        super().__init__(**kwargs)
        filters = positive_int(filters, "filters")
        n_angles = positive_int(n_angles, "n_angles")
        if mode not in _MODES:
            raise ValueError(f"`mode` must be one of {_MODES}. Received: mode={mode}")
        self.filters = filters
        self.kernel_size = square_kernel_size(kernel_size, "the filter is rotated about its centre")
        self.n_angles = n_angles
        self.mode = mode
        self.strides = positive_int_pair(strides, "strides")
        self.padding = padding_mode(padding)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = input_shape[-1]
        if self.mode == "vector":
            check_vector_channels("RotConv(mode='vector')", input_shape)
        elif channels is None:
            raise ValueError(f"RotConv needs a known channel axis. Received: input_shape={tuple(input_shape)}")
        check_window_fits("RotConv", input_shape, self.kernel_size, self.padding)
        # In "vector" mode input channel 2c holds u_c (weights of the x-component)
        # and 2c + 1 holds v_c (weights of the y-component).
        self.kernel = self.add_weight(
            name="kernel",
            shape=self.kernel_size + (channels, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )
        # The rotation matrix: computed (eagerly, cached per configuration) here, not per call.
        _bank_operator(self.n_angles, self.kernel_size[0], self.mode == "vector")
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})

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
        inside = tf.gather(tf.reshape(kernel, (k * k, channels, filters)), disk)  # (D, C_in, F)
        if self.mode == "vector":
            inside = tf.transpose(tf.reshape(inside, (size, channels // 2, 2, filters)), (2, 0, 1, 3))
            return tf.reshape(inside, (2 * size, channels // 2 * filters))
        return tf.reshape(inside, (size, channels * filters))

    def rotated_filter_bank(self):
        """The oriented filters as a convolution kernel `(k, k, C_in, n_angles * filters)`.

        Output channel `a * filters + f` is filter `f` at orientation
        `alpha_a = 360 * a / n_angles` degrees (orientation-major). A
        `Conv2D` with this kernel gives RotConv's responses before the
        orientation pooling; RotConv itself multiplies the disk pixels of
        each window by the same filters (`_window_bank`), which skips the
        zeros outside the disk.
        """
        k = self.kernel_size[0]
        n = self.n_angles
        channels, filters = self.kernel.shape[2], self.kernel.shape[3]
        disk, matrix = _bank_operator(n, k, self.mode == "vector")
        size = len(disk)
        # Rows (i[, p], a) of the rotated disk pixels, columns (c, f).
        bank = tf.matmul(tf.constant(matrix), self._disk_filters(), transpose_a=True)
        if self.mode == "vector":
            bank = tf.transpose(tf.reshape(bank, (size, 2, n, channels // 2, filters)), (0, 3, 1, 2, 4))
        else:
            bank = tf.transpose(tf.reshape(bank, (size, n, channels, filters)), (0, 2, 1, 3))
        bank = tf.reshape(bank, (size, channels, n * filters))
        bank = tf.scatter_nd(tf.constant(disk[:, None].astype("int32")), bank, (k * k, channels, n * filters))
        return tf.reshape(bank, (k, k, channels, n * filters))

    def _covers_whole_input(self, inputs):
        # Known at trace time; a dynamic height or width takes the window columns.
        return self.padding == "valid" and tuple(inputs.shape[1:3]) == self.kernel_size

    def _orientation_major_bank(self):
        """The bank over the disk pixels: `(n_angles, D * C_in, F)`, per
        orientation the rows `(i[, p], c)` (disk pixel, [vector component,]
        input channel) by the filters. Built from the same matrix as
        `rotated_filter_bank` with its columns reordered, so it needs no
        transpose and no scatter into k x k."""
        k, n = self.kernel_size[0], self.n_angles
        vector = self.mode == "vector"
        disk, _ = _bank_operator(n, k, vector)
        # Rows (a, i[, p]), columns (c, f).
        bank = tf.matmul(tf.constant(_orientation_major_operator(n, k, vector)), self._disk_filters(),
                         transpose_a=True)
        return tf.reshape(bank, (n, len(disk) * self.kernel.shape[2], self.filters))

    def _window_bank(self):
        """`(n_angles * F, D * C_in)`: row `a * F + f` is filter `f` at
        orientation `a` over the rows of `disk_window_columns`."""
        bank = tf.transpose(self._orientation_major_bank(), (0, 2, 1))
        return tf.reshape(bank, (self.n_angles * self.filters, -1))

    def _whole_input_responses(self, inputs):
        """Responses `(n_angles, N, F)` (pixels first) when the kernel covers
        the whole input ("valid", height = width = k): one product of the
        input's disk pixels with each orientation's filters, without the
        bank's transpose into `_window_bank` (7 MB at RotEqNet's last layer)."""
        k, n = self.kernel_size[0], self.n_angles
        channels = inputs.shape[-1]
        disk, _ = _bank_operator(n, k, self.mode == "vector")
        size = len(disk)
        pixels = tf.gather(tf.reshape(inputs, (-1, k * k, channels)), disk, axis=1)  # (N, D, C_in)
        if self.mode == "vector":  # channels (c, p) -> (p, c), the bank's row order
            pixels = tf.transpose(tf.reshape(pixels, (-1, size, channels // 2, 2)), (0, 1, 3, 2))
        pixels = tf.reshape(pixels, (-1, size * channels))
        return _per_orientation_products(pixels, self._orientation_major_bank())

    def _window_responses(self, inputs):
        """Responses `(n_angles, F, N * H' * W')`: the bank times the disk
        pixels of every window, one matrix product."""
        columns = disk_window_columns(inputs, self.kernel_size[0], self.strides, self.padding,
                                      vector=self.mode == "vector")
        responses = tf.matmul(self._window_bank(), columns)
        return tf.reshape(responses, (self.n_angles, self.filters, -1))

    def call(self, inputs):
        inputs = tf.convert_to_tensor(inputs)
        batch = tf.shape(inputs)[0]
        # XLA compiles the window columns and the pooling once per shape: zero
        # images pad the batch to one of a few sizes, so that callers whose
        # batch size changes all the time (DeepFool's shrinking set of
        # unfinished inputs) compile a few shapes, not one per size.
        filler = tf.zeros(tf.concat([[_padded_batch(batch) - batch], tf.shape(inputs)[1:]], 0), inputs.dtype)
        padded = tf.concat([inputs, filler], 0)
        whole_input = self._covers_whole_input(inputs)
        if whole_input:
            responses = self._whole_input_responses(padded)
        else:
            responses = self._window_responses(padded)
        bias = tf.convert_to_tensor(self.bias) if self.use_bias else tf.zeros((self.filters,), responses.dtype)
        field = orientation_pooled_field(responses, bias, pixels_first=whole_input)  # (N * H' * W', F, 2)
        height, width = (conv_output_length(tf.shape(inputs)[axis], self.kernel_size[0], stride, self.padding)
                         for axis, stride in zip((1, 2), self.strides))
        field = tf.reshape(field, (-1, height, width, 2 * self.filters))[:batch]
        field.set_shape(self.compute_output_shape(inputs.shape))
        return field

    def compute_output_shape(self, input_shape):
        check_window_fits("RotConv", input_shape, self.kernel_size, self.padding)
        batch, height, width, _ = input_shape
        k, s = self.kernel_size[0], self.strides
        return (
            batch,
            conv_output_length(height, k, s[0], self.padding),
            conv_output_length(width, k, s[1], self.padding),
            2 * self.filters,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "n_angles": self.n_angles,
                "mode": self.mode,
                "strides": self.strides,
                "padding": self.padding,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
