"""RotConv's input windows as columns: the disk pixels of every window, in an XLA kernel."""

import numpy as np
import tensorflow as tf

from keras_uap.layers.vector_ops import disk_pixels


def _padded_span(length, size, stride, padding):
    """(pad before, pad after, output length) along one axis, as TF's
    convolutions pad ("same": output ceil(length / stride), the extra pixel
    of an odd total after)."""
    if padding == "valid":
        return 0, 0, (length - size) // stride + 1
    output = (length + stride - 1) // stride
    total = tf.maximum((output - 1) * stride + size - length, 0)
    return total // 2, total - total // 2, output


def _gather_columns(inputs, size, strides, padding, vector):
    """The columns as TF ops (pads, strided slices, a stack): the forward
    kernel's body, and what the backward kernel differentiates."""
    if vector:  # channels (c, p) -> (p, c), the order of the bank's rows
        shape = tf.shape(inputs)
        pairs = tf.reshape(inputs, tf.concat([shape[:3], [-1, 2]], 0))
        inputs = tf.reshape(tf.transpose(pairs, (0, 1, 2, 4, 3)), shape)
    images = tf.transpose(inputs, (3, 0, 1, 2))  # (C, N, H, W): each window row is contiguous
    shape = tf.shape(images)
    top, bottom, height = _padded_span(shape[2], size, strides[0], padding)
    left, right, width = _padded_span(shape[3], size, strides[1], padding)
    images = tf.pad(images, [[0, 0], [0, 0], [top, bottom], [left, right]])
    windows = [
        images[:, :, row : row + (height - 1) * strides[0] + 1 : strides[0],
               col : col + (width - 1) * strides[1] + 1 : strides[1]]
        for row, col in zip(*np.divmod(disk_pixels(size), size))
    ]
    return tf.reshape(tf.stack(windows), (len(windows) * shape[0], shape[1] * height * width))


# Why a gradient of its own: a tape through an XLA function makes TF compile
# a forward variant of it (returning what its generated backward needs) beside
# the one inference compiled, ~0.65 s each per input shape on 2 cores, and
# RotEqNet meets a dozen batch shapes per run in two layers. Here a gradient
# runs the inference kernel (on stop_gradient inputs) and one backward kernel.
@tf.function(jit_compile=True)
def _columns(inputs, size, strides, padding, vector):
    return _gather_columns(inputs, size, strides, padding, vector)


@tf.function(jit_compile=True)
def _columns_gradient(inputs, upstream, size, strides, padding, vector):
    # tf.gradients, as TF builds a function's generated backward: the same
    # transposes of the slices and pads, which XLA sums in the disk pixels'
    # order as before, so the same bits. XLA drops the forward ops here, of
    # which the transposes use nothing but shapes.
    columns = _gather_columns(inputs, size, strides, padding, vector)
    return tf.gradients(columns, inputs, grad_ys=upstream)[0]


def disk_window_columns(inputs, size, strides=(1, 1), padding="same", vector=False):
    """The disk pixels of every `size x size` window of `inputs`, one column per window.

    Args:
        inputs: `(N, H, W, C)`; in "vector" layout (`vector=True`) channel
            `2 c + p` is component `p` of vector map `c`.
        size: the window's side k; the disk is that of `disk_pixels(size)`.
        strides, padding: as for a convolution ("same" pads like TF's).

    Returns:
        `(D * C, N * H' * W')`, `D = len(disk_pixels(size))`: row `d * C + c`
        is channel `c` at disk pixel `d` of the window (vector layout: row
        `(2 d + p) * C / 2 + c` is component `p` of map `c`), column
        `(n * H' + i) * W' + j` the window of output pixel `(i, j)` of image
        `n`. At stride 1 that is D copies of the input (230 MB at 500 images
        of 14 x 14 x 12, RotEqNet's second layer's input). A correlation with a bank of
        disk-masked filters is then ONE matrix product with the bank's
        `(filters, D * C)` rows: D / k^2 of a convolution's multiply-adds
        (49 / 81 for k = 9), and no convolution backward pass, whose
        single-channel case is slow in TF (at RotEqNet's first layer a
        Conv2D's forward and backward pass took 3.0x RotConv's, measured).
        The gradient (the sum of each column entry back onto its input
        pixel) is an XLA kernel of its own, bit for bit TF's generated
        gradient of the slices. Only first-order gradients are needed
        (training, the attacks); a second-order one would be TF's automatic
        gradient of that kernel, which nothing here tests.
    """
    arguments = (int(size), tuple(int(s) for s in strides), padding, bool(vector))

    @tf.custom_gradient
    def columns(inputs):
        def grad(upstream):
            return _columns_gradient(inputs, upstream, *arguments)

        # stop_gradient: a tape watching `inputs` would otherwise differentiate
        # the XLA function itself (`grad` is the gradient).
        return _columns(tf.stop_gradient(inputs), *arguments), grad

    return columns(inputs)
