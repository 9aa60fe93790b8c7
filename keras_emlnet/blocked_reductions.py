"""Whole-map sums the metrics need, computed chunk by chunk in cache-sized buffers.

A 480x640 float64 map is 2.4 MB; a chain of full-size NumPy operations streams it through
memory once per operation. Here each chunk (`BLOCK_SIZE` elements, 256 KiB) goes through the
whole chain while it sits in L2, into preallocated buffers, and is reduced with
single-threaded BLAS dot products. The formulas are the metrics' own; only the summation
order differs from a full-size `np.sum` (~1e-16 relative).
"""

import numpy as np

# 256 KiB of float64 per chunk: a chain of a few chunk buffers stays in L2, and per-call
# overhead is small next to the arithmetic.
BLOCK_SIZE = 32_768
# Dot products run on pieces of at most this many elements: OpenBLAS hands longer ones
# (> 10,000) to worker threads, which stall badly when the cores are busy, and a
# single-threaded ddot is the fastest reduction NumPy has (faster than np.sum or einsum).
DOT_CHUNK = 8_192


def blocks(*arrays):
    """Matching flat chunks of equal-shape arrays (views, no copies)."""
    flats = [array.reshape(-1) for array in arrays]
    for start in range(0, flats[0].size, BLOCK_SIZE):
        yield [flat[start : start + BLOCK_SIZE] for flat in flats]


def dot(a, b):
    """sum(a * b) of two equal-length 1-D float64 arrays by single-threaded BLAS pieces."""
    if a.size <= DOT_CHUNK:
        return np.dot(a, b)
    return sum(np.dot(a[i : i + DOT_CHUNK], b[i : i + DOT_CHUNK]) for i in range(0, a.size, DOT_CHUNK))


def _buffers(array, count):
    size = min(array.size, BLOCK_SIZE)
    return [np.empty(size) for _ in range(count)]


def centered_products(first, first_mean, second=None, second_mean=None):
    """Sums of products of deviations from the given means.

    Returns:
        (sum (a - ma)^2,) for one map; (sum (a - ma)^2, sum (a - ma)(b - mb), sum (b - mb)^2)
        for two maps of one shape.
    """
    a_buffer, b_buffer = _buffers(first, 2)
    if second is None:
        squares = 0.0
        for (a_block,) in blocks(first):
            a = a_buffer[: a_block.size]
            np.subtract(a_block, first_mean, out=a)
            squares += dot(a, a)
        return (float(squares),)
    a_squares = cross = b_squares = 0.0
    for a_block, b_block in blocks(first, second):
        a, b = a_buffer[: a_block.size], b_buffer[: a_block.size]
        np.subtract(a_block, first_mean, out=a)
        np.subtract(b_block, second_mean, out=b)
        a_squares += dot(a, a)
        cross += dot(a, b)
        b_squares += dot(b, b)
    return float(a_squares), float(cross), float(b_squares)


def kl_sum(saliency, density, ratio_scale, saliency_eps, eps):
    """sum D * log(eps + D * ratio_scale / (S + saliency_eps)) over two maps of one shape.

    With ratio_scale = sum(S) / sum(D) and saliency_eps = eps * sum(S) this is sum(D) times
    KLdiv.m's sum Q log(eps + Q / (P + eps)), P = S / sum(S), Q = D / sum(D): one division
    per pixel instead of three. A negative ratio gives NaN (MATLAB: a complex number).
    """
    ratio_buffer, denominator_buffer = _buffers(saliency, 2)
    total = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        for s_block, d_block in blocks(saliency, density):
            ratio, denominator = ratio_buffer[: s_block.size], denominator_buffer[: s_block.size]
            np.add(s_block, saliency_eps, out=denominator)
            np.multiply(d_block, ratio_scale, out=ratio)
            np.divide(ratio, denominator, out=ratio)
            ratio += eps
            np.log(ratio, out=ratio)
            total += dot(d_block, ratio)
    return float(total)


def intersection_sum(saliency, saliency_offset, density, density_offset, scale):
    """sum min(S - saliency_offset, (D - density_offset) * scale) over two maps of one shape.

    SIM's sum min(P, Q) with P = (S - min S) / a, Q = (D - min D) / b equals this with
    scale = a / b, divided by a: two divisions per pixel fewer. Zero offsets are skipped
    (subtracting 0 changes nothing).
    """
    a_buffer, b_buffer = _buffers(saliency, 2)
    total = 0.0
    for s_block, d_block in blocks(saliency, density):
        b = b_buffer[: s_block.size]
        if density_offset:
            np.subtract(d_block, density_offset, out=b)
            b *= scale
        else:
            np.multiply(d_block, scale, out=b)
        if saliency_offset:
            a = a_buffer[: s_block.size]
            np.subtract(s_block, saliency_offset, out=a)
        else:
            a = s_block
        np.minimum(a, b, out=b)
        total += b.sum()
    return float(total)
