"""Argument checks and shape arithmetic shared by every convolution and
pooling layer of the package (the p4 and the vector-field families).

Integer arguments accept Python and NumPy integers (configs stay JSON: they
are stored as Python ints) and reject bools and floats, so that `filters=True`
or `kernel_size=3.5` fail at construction instead of building a surprise.
"""

import numbers

import numpy as np

__all__ = [
    "positive_int",
    "positive_int_pair",
    "square_kernel_size",
    "padding_mode",
    "check_window_fits",
    "conv_output_length",
]


def _is_int(value):
    # NumPy integers count (numbers.Integral); True and False do not.
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def positive_int(value, name):
    """`value` as a Python int, or a ValueError unless it is an integer >= 1."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value}")
    return int(value)


def positive_int_pair(value, name):
    """An integer or a pair of integers, each >= 1, as a pair of Python ints."""
    if _is_int(value):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = (value,)
    if len(pair) != 2 or not all(_is_int(v) and v >= 1 for v in pair):
        raise ValueError(f"`{name}` must be a positive int or pair. Received: {name}={value}")
    return tuple(int(v) for v in pair)


def square_kernel_size(kernel_size, why):
    """A positive int or square pair as `(k, k)`; `why` ends the error
    message with the reason the layer needs a square kernel."""
    try:
        pair = positive_int_pair(kernel_size, "kernel_size")
    except ValueError:
        pair = None
    if pair is None or pair[0] != pair[1]:
        raise ValueError(
            f"`kernel_size` must be a positive int or a square (k, k) tuple, since {why}. "
            f"Received: kernel_size={kernel_size}"
        )
    return pair


def padding_mode(padding):
    """'valid' or 'same' (any case), lower-cased; a ValueError otherwise."""
    mode = str(padding).lower()
    if mode not in ("valid", "same"):
        raise ValueError(f"`padding` must be 'valid' or 'same'. Received: padding={padding}")
    return mode


def check_window_fits(layer_name, input_shape, window, padding):
    """Raises if a "valid" window is larger than the (known) height or width,
    which would otherwise give a negative output size or a backend error."""
    sizes = tuple(input_shape)[1:3]
    if padding == "valid" and any(size is not None and size < w for size, w in zip(sizes, window)):
        raise ValueError(
            f"{layer_name} with padding='valid' needs inputs of at least {window[0]}x{window[1]} pixels, "
            f"its window. Received: input_shape={tuple(input_shape)}"
        )


def conv_output_length(length, kernel, stride, padding):
    """Spatial size after a convolution or pooling window (None stays None)."""
    if length is None:
        return None
    if padding == "same":
        return (length + stride - 1) // stride
    return (length - kernel) // stride + 1
