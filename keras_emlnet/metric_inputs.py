"""Input checks for `keras_emlnet.metrics`: maps, fixation maps, finiteness, resizing.

Every metric needs a few whole-map reductions anyway (a sum, a minimum, a maximum), and NaN
and infinities propagate through them: a finite sum, or a finite minimum and maximum, proves
every value finite. So maps are converted without a pass of their own (`float_map`) and
checked with the reductions the metric computes (`require_finite`); only when one of them is
not finite (NaN, inf, or a sum that overflowed) are the values checked one by one.
"""

import math

import numpy as np

from keras_emlnet import imresize as imresize_lib

# Fixation-map dtypes compared with 0 as they are (their conversion to float64 keeps the sign).
_NATIVE_FIXATION_KINDS = ("b", "u", "i")
_NATIVE_FIXATION_FLOATS = (np.float16, np.float32, np.float64)


def _checked_array(value, name):
    array = np.asarray(value)
    if array.dtype != np.bool_ and not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise ValueError(f"{name} must be real, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    return array


def float_map(value, name):
    """`value` as a C-contiguous float64 2-D array, or ValueError naming `name` and the fault.

    Checks dtype (numeric, real), dimensionality and emptiness; finiteness is left to
    `require_finite` with the reductions the caller computes anyway.
    """
    return np.ascontiguousarray(_checked_array(value, name), dtype=np.float64)


def require_finite(array, name, *reductions):
    """ValueError naming `name` if `array` holds NaN or infinite values.

    Args:
        array: the map.
        name: argument name for the message.
        *reductions: sums, minima or maxima of the whole `array` (at least one); when all are
            finite so is every value, otherwise (or after an overflowing sum) every value is checked.
    """
    if reductions and all(math.isfinite(value) for value in reductions):
        return
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def fixation_points(value, name):
    """Shape and flat indices of the fixated (> 0) pixels of a fixation map, validated.

    Bool, integer and float16/32/64 maps are compared with 0 without a float64 copy.

    Raises:
        ValueError: not numeric, real, 2-D and non-empty; NaN or infinite; negative values.
    """
    array = _checked_array(value, name)
    if array.dtype.kind not in _NATIVE_FIXATION_KINDS and array.dtype.type not in _NATIVE_FIXATION_FLOATS:
        array = array.astype(np.float64)
    flat = np.ravel(array)
    indices = np.flatnonzero(flat > 0)  # a bool mask first: several times faster on floats
    if array.dtype.kind in "bu":
        return array.shape, indices
    low = flat.min()  # NaN when there is one, so `low >= 0` also rules NaN out
    if not low >= 0:
        if array.dtype.kind == "f" and not np.isfinite(flat).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        raise ValueError(f"{name} must be a non-negative (binary) fixation map")
    if array.dtype.kind == "f" and not np.isfinite(flat[indices]).all():  # +inf is > 0
        raise ValueError(f"{name} contains NaN or infinite values")
    return array.shape, indices


def map_at(value, shape, name):
    """A map as float64 at `shape` (MATLAB imresize when its shape differs) and whether it was checked.

    Returns:
        (array, checked): when the map had to be resized its own values were checked first
        (checked is True; the resized values are not re-checked, as MATLAB resizes whatever it
        gets); otherwise checked is False and the caller must `require_finite` the array.
    """
    array = float_map(value, name)
    if array.shape == tuple(shape):
        return array, False
    require_finite(array, name, array.sum())
    return imresize_lib.imresize(array, output_shape=shape), True

