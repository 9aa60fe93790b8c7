"""MATLAB `imresize` (bicubic, antialiased) for 2-D float maps, as the MIT benchmark used it.

The MIT saliency benchmark resizes every saliency map to the ground truth's size with
MATLAB's default `imresize(A, [rows cols])` (or `imresize(A, scale)` for EMD's
downsampling). That is separable cubic convolution with Keys' kernel (a = -0.5), where
shrinking widens the kernel by 1/scale (antialiasing), border pixels are replicated
(the benchmark-era implementation clamps out-of-range indices; later MATLAB releases mirror
instead) and the scalar form's output size is `ceil(scale * size)` while the kernel still uses
the given scale. scipy's `zoom` and OpenCV differ from this by up to 1e-2 on saliency maps.

Formula (one dimension; output pixel x = 1..out, 1-based as in MATLAB):
    u = x / s + 0.5 * (1 - 1 / s)
    k(t) = s * keys(s * t) and width 4 / s   if s < 1 (antialiased), else keys(t) and width 4
    out[x] = sum_j k(u - j) * in[clamp(j, 1, n)] / sum_j k(u - j),
    j = floor(u - width / 2) + 0 .. ceil(width) + 1
    keys(t) = (a + 2)|t|^3 - (a + 3)|t|^2 + 1           for |t| <= 1
              a|t|^3 - 5a|t|^2 + 8a|t| - 4a             for 1 < |t| <= 2, else 0

Values are computed in float64 with no rounding or clipping (MATLAB would round and saturate
when the input is an integer class; we always work on float64 values).
"""

import functools
import math

import numpy as np
import scipy.sparse

KEYS_A = -0.5  # Keys' cubic convolution parameter used by MATLAB's 'bicubic'
KERNEL_WIDTH = 4.0  # support of the cubic kernel in input pixels at scale 1


def keys_cubic(x):
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's `cubic`), elementwise."""
    ax = np.abs(np.asarray(x, dtype=np.float64))
    ax2 = ax * ax
    ax3 = ax2 * ax
    inner = (KEYS_A + 2.0) * ax3 - (KEYS_A + 3.0) * ax2 + 1.0
    outer = KEYS_A * ax3 - 5.0 * KEYS_A * ax2 + 8.0 * KEYS_A * ax - 4.0 * KEYS_A
    return inner * (ax <= 1.0) + outer * ((ax > 1.0) & (ax <= 2.0))


@functools.lru_cache(maxsize=64)
def resize_weights(in_length, out_length, scale):
    """The (out_length, in_length) sparse matrix that resizes one dimension like MATLAB.

    Args:
        in_length: number of input pixels along the dimension.
        out_length: number of output pixels.
        scale: the scale factor MATLAB uses for this dimension (out/in for the size form,
            the given factor for the scalar form).

    Returns:
        A read-only `scipy.sparse.csr_array` whose rows hold each output pixel's weights
        (rows sum to 1; clamped border indices accumulate onto the edge pixels).
    """
    if scale < 1.0:
        width = KERNEL_WIDTH / scale

        def kernel(t):
            return scale * keys_cubic(scale * t)

    else:
        width = KERNEL_WIDTH
        kernel = keys_cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    columns = np.clip(indices, 1, in_length).astype(np.intp) - 1
    rows = np.broadcast_to(np.arange(out_length)[:, None], columns.shape)
    matrix = scipy.sparse.csr_array(
        (weights.ravel(), (rows.ravel(), columns.ravel())), shape=(out_length, in_length)
    )
    matrix.sum_duplicates()
    matrix.data.setflags(write=False)
    return matrix


@functools.lru_cache(maxsize=64)
def _uses_every_input(in_length, out_length, scale):
    return np.unique(resize_weights(in_length, out_length, scale).indices).size == in_length


def uses_every_pixel(input_shape, *, output_shape=None, scale=None):
    """Whether every input pixel has a stored weight in both passes of this resize.

    Then a NaN or infinite input value makes some output value NaN or infinite (0 * NaN and
    0 * inf are NaN), so a finite output proves the input finite. True for every shrink (the
    kernel is wider than the output spacing) and every enlargement.
    """
    shape, scales = output_shape_and_scale(input_shape, output_shape=output_shape, scale=scale)
    if shape == tuple(input_shape) and scales == (1.0, 1.0):
        return True
    return all(_uses_every_input(n, m, s) for n, m, s in zip(input_shape, shape, scales))


def _check_image(image):
    array = np.asarray(image)
    if array.ndim != 2:
        raise ValueError(f"imresize expects a 2-D map, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"imresize expects a non-empty map, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(f"imresize expects a numeric map, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def output_shape_and_scale(input_shape, *, output_shape=None, scale=None):
    """MATLAB's output size and per-dimension scale for `imresize(A, scale|[rows cols])`.

    Exactly one of `output_shape` (rows, cols) or a scalar `scale` must be given. The
    scalar form gives `ceil(scale * size)` pixels but keeps `scale` for the kernel.
    """
    if (output_shape is None) == (scale is None):
        raise ValueError("give exactly one of output_shape=(rows, cols) or scale")
    if scale is not None:
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {scale}")
        shape = tuple(int(math.ceil(scale * n)) for n in input_shape)
        return shape, (scale, scale)
    shape = tuple(int(n) for n in output_shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"output_shape must be two positive integers, got {output_shape}")
    return shape, (shape[0] / input_shape[0], shape[1] / input_shape[1])


def imresize(image, *, output_shape=None, scale=None):
    """Resize a 2-D map like MATLAB's default `imresize` (bicubic, antialiasing on).

    Args:
        image: 2-D array of any numeric or bool dtype (used as float64 values).
        output_shape: (rows, cols) of the result (MATLAB's `imresize(A, [rows cols])`).
        scale: positive scalar factor (MATLAB's `imresize(A, scale)`), output size
            `ceil(scale * size)`.

    Returns:
        float64 array of the output shape. An unchanged shape returns a float64 copy
        (MATLAB's weights are then exactly the identity).

    Raises:
        ValueError: wrong dimensionality, empty or non-numeric image, or bad size/scale.
    """
    array = _check_image(image)
    shape, scales = output_shape_and_scale(array.shape, output_shape=output_shape, scale=scale)
    if shape == array.shape and scales == (1.0, 1.0):
        return array.copy()
    # sparse products, single-threaded (dense BLAS on whole maps would hand the work to
    # OpenBLAS's worker threads, which stall badly, ~50x, when the cores are busy)
    row_weights = resize_weights(array.shape[0], shape[0], scales[0])
    col_weights = resize_weights(array.shape[1], shape[1], scales[1])
    # MATLAB resizes along the dimension with the smaller scale first (rows on ties).
    if scales[0] <= scales[1]:
        if scales[0] <= _MAX_BANDED_SCALE and array.size >= _MIN_BANDED_PIXELS:
            rows = _banded_row_product(array, array.shape[0], shape[0], scales[0])
        else:
            rows = row_weights @ array
        return np.asarray((col_weights @ rows.T).T)
    return np.asarray(row_weights @ (col_weights @ array.T).T)


# Strong row shrinking (EMD's 1/32) of large maps goes through small dense products instead.
_MAX_BANDED_SCALE = 0.25
_MIN_BANDED_PIXELS = 65_536
# OpenBLAS runs a product with m*n*k <= 4 * 65536 in the calling thread.
_SINGLE_THREADED_PRODUCT = 4 * 65_536


@functools.lru_cache(maxsize=16)
def _row_bands(in_length, out_length, scale, block_rows):
    """[(first input row, output rows lo:hi, dense weights (hi - lo, block))] per block of input rows."""
    weights = resize_weights(in_length, out_length, scale)
    dense = weights.toarray()
    bands = []
    for start in range(0, in_length, block_rows):
        # output rows with a stored weight (even an exact 0) on this block's input rows
        used = np.flatnonzero(np.diff(weights[:, start : start + block_rows].indptr) > 0)
        if used.size:
            lo, hi = int(used[0]), int(used[-1]) + 1
            band = np.ascontiguousarray(dense[lo:hi, start : start + block_rows])
            band.setflags(write=False)
            bands.append((start, lo, hi, band))
    return tuple(bands)


def _block_rows(cols, scale):
    """Input rows per block so that (output rows fed) x rows x cols stays single-threaded.

    A block of b input rows feeds at most b * scale + 5 output rows (the kernel spans
    4 / scale input rows, outputs are 1 / scale apart): solve (b * scale + 6) * b * cols <= limit.
    """
    limit = _SINGLE_THREADED_PRODUCT / cols
    return max(1, int((math.sqrt(36.0 + 4.0 * scale * limit) - 6.0) / (2.0 * scale)))


def _banded_row_product(array, in_length, out_length, scale):
    """resize_weights(...) @ array by blocks of input rows, each with only the output rows it feeds.

    The row weights are banded (each output row reads ~4 / scale consecutive input rows), so
    a block of input rows meets a few output rows: small dense products, each below
    OpenBLAS's threading threshold, about twice as fast as the sparse product here. Every
    stored weight takes part (a NaN input still reaches the output); sums are grouped by
    block, so results differ from the sparse product by rounding only (~1e-16 relative).
    """
    out = np.zeros((out_length, array.shape[1]))
    for start, lo, hi, band in _row_bands(in_length, out_length, scale, _block_rows(array.shape[1], scale)):
        out[lo:hi] += band @ array[start : start + band.shape[1]]
    return out
