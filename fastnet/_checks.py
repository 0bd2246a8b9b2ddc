"""Input validation shared by the public API: checked in Python, before any
compiled code runs, with messages that name the argument, what it got and
what was expected."""
import difflib
import math
import numbers

import numpy as np


def check_name(argument, value, valid, aliases=None):
    """Return the canonical name for ``value`` in ``valid`` (or an alias of one)."""
    aliases = aliases or {}
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a string naming one of {sorted(valid)}, "
                        f"got {value!r} of type {type(value).__name__}")
    if value in valid:
        return value
    key = value.lower().replace("-", "_")
    key = aliases.get(key, key)
    if key in valid:
        return key
    choices = sorted(valid) + sorted(aliases)
    close = difflib.get_close_matches(key, choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"{argument}={value!r} is not known; expected one of "
                     f"{sorted(valid)}{hint}")


def check_int(argument, value, minimum=1):
    """An integer >= minimum (bools and integral floats like 3.0 are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be an integer >= {minimum}, got {value!r} "
                        f"of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_float(argument, value, low=-math.inf, high=math.inf, low_open=False,
                high_open=False):
    """A finite real number inside [low, high] (or the open variants)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument} must be a real number, got {value!r} "
                        f"of type {type(value).__name__}")
    value = float(value)
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not math.isfinite(value) or too_low or too_high:
        raise ValueError(f"{argument} must be a finite number in {left}{low}, {high}{right}, "
                         f"got {value!r}")
    return value


def check_matrix(argument, value, dtype, n_cols=None, cols_meaning="columns"):
    """A finite, non-empty 2-D array, returned C-contiguous in ``dtype``.

    Lists, read-only and non-contiguous arrays are accepted (copied when
    needed); object, string and complex data are refused.
    """
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{argument} must be a 2-D array of numbers, got "
                         f"{type(value).__name__} that NumPy cannot make an array of: "
                         f"{error}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{argument} must hold real numbers, got an array of dtype "
                        f"{array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{argument} must be a 2-D array (samples x features), got "
                         f"shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{argument} is empty: got shape {array.shape}, expected at "
                         "least one row")
    if n_cols is not None and array.shape[1] != n_cols:
        raise ValueError(f"{argument} has {array.shape[1]} {cols_meaning}; expected "
                         f"{n_cols}")
    original = array
    with np.errstate(over="ignore"):   # an overflow to inf is reported below
        array = np.ascontiguousarray(array, dtype=dtype)
    if not array.flags.writeable:  # Numba would compile every kernel again for it
        array = array.copy()
    try:
        check_finite(argument, array)
    except ValueError:
        if original.dtype != array.dtype and np.isfinite(original).all():
            raise ValueError(f"{argument} holds values beyond the range of {array.dtype.name} "
                             f"(about ±{np.finfo(array.dtype).max:.3g}): they overflow to inf "
                             "in the network's dtype") from None
        raise
    return array


def check_finite(argument, array):
    """ValueError naming the first NaN or inf. min and max propagate NaN and
    show inf, and unlike isfinite they allocate nothing the size of the data."""
    if array.dtype.kind != "f" or array.size == 0:
        return
    with np.errstate(invalid="ignore"):
        low, high = array.min(), array.max()
    if not (math.isfinite(low) and math.isfinite(high)):
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"{argument} contains NaN or inf (first at index "
                         f"{tuple(int(i) for i in bad)})")


def check_same_length(first, a, second, b):
    if len(a) != len(b):
        raise ValueError(f"{first} and {second} must have the same number of samples, "
                         f"got {len(a)} and {len(b)}")
