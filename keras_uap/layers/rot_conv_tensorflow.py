"""RotConv's TensorFlow path: the responses by the cheapest of three
products for the layer's shape (below), and the orientation pooling in XLA
kernels. Same numbers as `RotConv.pooled_field_by_convolution` to float
rounding; RotConv takes it on the TensorFlow backend only.

Which product (`_layout`), decided when the call is traced:
- the kernel covers the whole input ("valid", height = width = k): the
  input's disk pixels times each orientation's filters;
- otherwise, fewer than `_CONVOLUTION_MIN_CHANNELS` input channels: the disk
  pixels of every window as columns, times the bank's rows (D / k^2 of a
  convolution's multiply-adds; TF's convolutions with one input channel are
  slow, backward above all: 53 against 20 ms forward + backward at
  RotEqNet's first layer);
- otherwise the convolution with the k x k bank: there the columns
  (D * C_in values per pixel, 7.4 of 22.8 ms at RotEqNet's second layer,
  12 channels) and a matrix product slower per multiply-add than oneDNN's
  convolution cost more than the zeros outside the disk in a forward pass
  (0.87x the columns' time side by side, two runs); with the backward pass the
  convolution was 1.06x-1.07x the columns' (two runs), so the rule favours
  the forward passes that most of a study's curves are
  (benchmarks/RESULTS.md, "RotConv and RotEqNet throughput").
"""

import tensorflow as tf

from keras_uap.layers.conv_args import conv_output_length
from keras_uap.layers.disk_windows import disk_window_columns
from keras_uap.layers.orientation_pooling import orientation_pooled_field
from keras_uap.layers.vector_ops import disk_pixels

# The batch sizes RotConv computes, up to _BATCH_MULTIPLE; beyond it, multiples
# of it. XLA compiles the window columns and the pooling once per batch shape
# (about 1.5 s per shape and layer on a CPU), and DeepFool's shrinking set of
# unfinished inputs, the attacks' and evaluations' last partial batches all
# meet sizes of their own: factors of 4 make any size up to 128 one of 5
# shapes, for at most 4x the work on batches that are small, and cheap, anyway.
_SMALL_BATCHES = (1, 4, 16, 64)
_BATCH_MULTIPLE = 128

# Measured at 1 input channel (RotEqNet's first layer: the columns win) and
# 12 (its second: the convolution wins); no shape between them was measured.
_CONVOLUTION_MIN_CHANNELS = 8


def padded_batch(batch):
    """The batch size RotConv computes for `batch` (a scalar int32 tensor):
    0, 1, 4, 16, 64 or 128 up to 128, the next multiple of 128 beyond it
    (256, 384, ...: at most 1 + 127 / batch times the work there)."""
    padded = (batch + _BATCH_MULTIPLE - 1) // _BATCH_MULTIPLE * _BATCH_MULTIPLE
    for size in reversed(_SMALL_BATCHES):
        padded = tf.where((batch > 0) & (batch <= size), size, padded)
    return padded


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


def _covers_whole_input(layer, inputs):
    # Known at trace time; a dynamic height or width takes the window columns.
    return layer.padding == "valid" and tuple(inputs.shape[1:3]) == layer.kernel_size


def _whole_input_responses(layer, inputs):
    """Responses `(n_angles, N, F)` (pixels first) when the kernel covers
    the whole input ("valid", height = width = k): one product of the
    input's disk pixels with each orientation's filters, without the
    bank's transpose into the window bank (7 MB at RotEqNet's last layer)."""
    k = layer.kernel_size[0]
    channels = inputs.shape[-1]
    disk = disk_pixels(k)
    size = len(disk)
    pixels = tf.gather(tf.reshape(inputs, (-1, k * k, channels)), disk, axis=1)  # (N, D, C_in)
    if layer.mode == "vector":  # channels (c, p) -> (p, c), the bank's row order
        pixels = tf.transpose(tf.reshape(pixels, (-1, size, channels // 2, 2)), (0, 1, 3, 2))
    pixels = tf.reshape(pixels, (-1, size * channels))
    return _per_orientation_products(pixels, layer.orientation_major_bank())


def _convolution_responses(layer, inputs):
    """Responses `(N * H' * W', n_angles, F)`: one convolution with the
    k x k bank (channel `a * F + f` filter `f` at orientation `a`)."""
    responses = tf.nn.conv2d(inputs, layer.rotated_filter_bank(), layer.strides, layer.padding.upper())
    return tf.reshape(responses, (-1, layer.n_angles, layer.filters))


def _window_responses(layer, inputs):
    """Responses `(n_angles, F, N * H' * W')`: the bank (row `a * F + f`
    filter `f` at orientation `a`) times the disk pixels of every window,
    one matrix product."""
    bank = tf.transpose(layer.orientation_major_bank(), (0, 2, 1))
    bank = tf.reshape(bank, (layer.n_angles * layer.filters, -1))
    columns = disk_window_columns(inputs, layer.kernel_size[0], layer.strides, layer.padding,
                                  vector=layer.mode == "vector")
    return tf.reshape(tf.matmul(bank, columns), (layer.n_angles, layer.filters, -1))


def _layout(layer, inputs):
    """The product that computes the responses, named by the layout it leaves
    them in (`_PRODUCTS`; the module's docstring says why). Known at trace
    time: the channel axis always is."""
    if _covers_whole_input(layer, inputs):
        return "amf"
    return "maf" if inputs.shape[-1] >= _CONVOLUTION_MIN_CHANNELS else "afm"


# {layout: the product leaving the responses so}
_PRODUCTS = {"amf": _whole_input_responses, "maf": _convolution_responses, "afm": _window_responses}


def pooled_field(layer, inputs, layout=None):
    """RotConv `layer`'s output field for `inputs`, on TensorFlow.

    `layout` picks the product ("afm": window columns, "maf": convolution,
    "amf": one product per orientation, for a kernel covering the input);
    None takes `_layout`'s for the shape. Every product gives the same
    numbers to float rounding; the choice is for benchmarks and tests."""
    inputs = tf.convert_to_tensor(inputs)
    batch = tf.shape(inputs)[0]
    # Zero images pad the batch to one of a few sizes (padded_batch), so that
    # callers whose batch size changes all the time compile a few shapes.
    filler = tf.zeros(tf.concat([[padded_batch(batch) - batch], tf.shape(inputs)[1:]], 0), inputs.dtype)
    padded = tf.concat([inputs, filler], 0)
    layout = layout or _layout(layer, padded)
    responses = _PRODUCTS[layout](layer, padded)
    bias = tf.convert_to_tensor(layer.bias) if layer.use_bias else tf.zeros((layer.filters,), responses.dtype)
    field = orientation_pooled_field(responses, bias, layout)  # (N * H' * W', F, 2)
    height, width = (conv_output_length(tf.shape(inputs)[axis], layer.kernel_size[0], stride, layer.padding)
                     for axis, stride in zip((1, 2), layer.strides))
    field = tf.reshape(field, (-1, height, width, 2 * layer.filters))[:batch]
    field.set_shape(layer.compute_output_shape(inputs.shape))
    return field
