"""Input checks and shared elementwise helpers for `keras_emlnet.metrics`."""

import numpy as np

from keras_emlnet import imresize as imresize_lib

BLOCK_SIZE = 16_384  # elements per chunk of elementwise work (128 KiB of float64)


def as_map(value, name, *, fixations=False):
    """`value` as a C-contiguous float64 2-D array, or ValueError naming `name` and the fault.

    Rejects non-numeric or complex dtypes, other dimensionalities, empty arrays, NaN or
    infinite values and, for fixation maps, negative values.
    """
    array = np.asarray(value)
    if array.dtype != np.bool_ and not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise ValueError(f"{name} must be real, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    array = np.ascontiguousarray(array, dtype=np.float64)
    # a finite sum proves every value finite without a full-size temporary
    if not np.isfinite(array.sum()) and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if fixations and array.min() < 0:
        raise ValueError(f"{name} must be a non-negative (binary) fixation map")
    return array


def resized(saliency_map, shape):
    """The saliency map at `shape` via MATLAB imresize (the same array when already there)."""
    if saliency_map.shape == shape:
        return saliency_map
    return imresize_lib.imresize(saliency_map, output_shape=shape)


def fixated_indices(fixation_map):
    """Flat indices of the fixated (> 0) pixels of a validated, non-negative fixation map."""
    # a boolean mask first: np.flatnonzero on float64 is several times slower
    return np.flatnonzero(fixation_map.reshape(-1) > 0)


def blocks(*arrays):
    """Matching flat chunks of equal-shape arrays.

    Elementwise work runs chunk by chunk so temporaries stay small: full-size temporaries
    cost more in fresh memory (page faults) than the arithmetic itself.
    """
    flats = [array.reshape(-1) for array in arrays]
    for start in range(0, flats[0].size, BLOCK_SIZE):
        yield [flat[start : start + BLOCK_SIZE] for flat in flats]
