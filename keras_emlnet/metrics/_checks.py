"""Input checks for `keras_emlnet.metrics`: maps, fixation maps, finiteness, resizing.

Every metric needs a few whole-map reductions anyway (a sum, a minimum, a maximum), and NaN
and infinities propagate through them: a finite sum, or a finite minimum and maximum, proves
every value finite. So maps are converted without a pass of their own (`float_map`) and
checked with the reductions the metric computes (`require_finite`); only when one of them is
not finite (NaN, inf, or a sum that overflowed) are the values checked one by one.
"""

import functools
import math

import numpy as np

from keras_emlnet.metrics import imresize as imresize_lib

# Fixation-map dtypes compared with 0 as they are (their conversion to float64 keeps the sign).
_NATIVE_FIXATION_KINDS = ("b", "u", "i")
_NATIVE_FIXATION_FLOATS = (np.float16, np.float32, np.float64)


def checked_array(value, name):
    """`value` as an array, or ValueError unless it is a numeric, real, non-empty 2-D array."""
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
    return np.ascontiguousarray(checked_array(value, name), dtype=np.float64)


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
    array = checked_array(value, name)
    if array.dtype.kind not in _NATIVE_FIXATION_KINDS and array.dtype.type not in _NATIVE_FIXATION_FLOATS:
        array = array.astype(np.float64)
    flat = np.ravel(array)
    if array.dtype.kind in "bu":
        return array.shape, np.flatnonzero(flat > 0)  # a bool mask first: several times faster
    # every negative, NaN or infinite value is nonzero: checking the nonzero values (a few
    # hundred fixations) checks the whole map without another pass over it
    nonzero = np.flatnonzero(flat != 0)
    values = flat[nonzero]
    if array.dtype.kind == "f" and not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if (values < 0).any():
        raise ValueError(f"{name} must be a non-negative (binary) fixation map")
    return array.shape, nonzero


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



class CheckedMap:
    """A float64 map at the ground truth's shape whose whole-map reductions are computed once.

    Every metric needs some of a map's sum, minimum and maximum, and those also prove its
    values finite (`require_finite`). A `CheckedMap` computes each once, checks the map with
    the first one computed, and lets the metrics scoring one pair share them.

    Attributes:
        array: the C-contiguous float64 map (resized to `shape` when its shape differed).
        name: argument name used in error messages.
    """

    def __init__(self, value, name, shape=None):
        if shape is None:
            self.array, self._checked = float_map(value, name), False
        else:
            self.array, self._checked = map_at(value, shape, name)
        self.name = name

    @property
    def flat(self):
        return self.array.reshape(-1)

    @property
    def size(self):
        return self.array.size

    def require_finite(self, *reductions):
        """`require_finite` with whole-map reductions of this map (or values bounding them), once."""
        if not self._checked:
            require_finite(self.array, self.name, *reductions)
            self._checked = True

    def prepare(self):
        """Compute (and check, and cache) the sum and extremes now, e.g. before threads share the map."""
        return self.total, self.extremes

    def check(self):
        """ValueError naming the map if it holds NaN or infinite values (through its sum)."""
        self.require_finite(self.total)

    @functools.cached_property
    def total(self):
        """sum of the map (np.sum's pairwise order)."""
        total = self.array.sum()
        self.require_finite(total)
        return total

    @functools.cached_property
    def extremes(self):
        """(min, max) of the map."""
        low, high = self.array.min(), self.array.max()
        self.require_finite(low, high)
        return low, high
