"""Argument checks shared by the `keras_uap.api` modules.

A bad argument raises `ArgumentError`, which is both a `UserError` (the CLI
prints it as one line and exits 2) and a `ValueError` (what a Python caller
expects from a bad value).
"""

import math
import numbers

from keras_uap.errors import UserError

__all__ = ["ArgumentError", "check_choice", "check_positive_int", "check_positive_number", "check_clip_range",
           "check_seed", "RANGE_TOL", "range_if_outside"]

# How far outside [clip_min, clip_max] inputs may lie: float rounding (e.g. after a division by 255).
RANGE_TOL = 1e-5


class ArgumentError(UserError, ValueError):
    """An argument of a `keras_uap.api` function has a bad value."""


def check_choice(name, value, choices):
    """`value` if it is one of `choices`, else an ArgumentError naming them."""
    if not isinstance(value, str) or value not in choices:
        raise ArgumentError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")
    return value


def check_positive_int(name, value, allow_none=False):
    """`value` as an int >= 1 (or None when `allow_none`)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ArgumentError(f"`{name}` must be an int >= 1. Received: {name}={value!r}")
    return int(value)


def check_positive_number(name, value, allow_none=False):
    """`value` as a finite float > 0 (or None when `allow_none`)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ArgumentError(f"`{name}` must be a finite number > 0. Received: {name}={value!r}")
    return float(value)


def check_clip_range(clip_min, clip_max):
    """(clip_min, clip_max) as floats, finite with clip_min < clip_max."""
    ok = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in (clip_min, clip_max))
    if not ok or not clip_min < clip_max:
        raise ArgumentError(f"`clip_min` must be a finite number below `clip_max`. "
                            f"Received: clip_min={clip_min!r}, clip_max={clip_max!r}")
    return float(clip_min), float(clip_max)


def check_seed(value):
    """`value` as an int >= 0 (what `np.random.default_rng` takes)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ArgumentError(f"`seed` must be an int >= 0. Received: seed={value!r}")
    return int(value)


def range_if_outside(x, clip_min, clip_max):
    """(min, max) of the array `x` when it leaves [clip_min, clip_max] by more
    than `RANGE_TOL`, else None."""
    low, high = float(x.min()), float(x.max())
    return (low, high) if low < clip_min - RANGE_TOL or high > clip_max + RANGE_TOL else None
