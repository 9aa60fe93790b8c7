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
# shifted_sum takes sum(x) - n*low for sum(x - low) while that loses fewer than 3 digits.
_MAX_CANCELLATION = 1e3


def blocks(*arrays):
    """Matching flat chunks of equal-shape arrays (views, no copies)."""
    flats = [array.reshape(-1) for array in arrays]
    for start in range(0, flats[0].size, BLOCK_SIZE):
        yield [flat[start : start + BLOCK_SIZE] for flat in flats]


def shifted_sum(array, low, total):
    """sum(array - low) from total = sum(array), unless the subtraction would cancel digits.

    sum(x) - n*low is used while it loses < 3 digits (error < ~1e-12 relative); otherwise
    the shifted values are summed chunk by chunk.
    """
    offset = array.size * float(low)
    shifted = float(total) - offset
    if abs(total) + abs(offset) <= _MAX_CANCELLATION * abs(shifted):
        return shifted
    return float(sum(np.subtract(block, low).sum() for (block,) in blocks(array)))


def dot(a, b):
    """sum(a * b) of two equal-length 1-D float64 arrays by single-threaded BLAS pieces."""
    if a.size <= DOT_CHUNK:
        return np.dot(a, b)
    return sum(np.dot(a[i : i + DOT_CHUNK], b[i : i + DOT_CHUNK]) for i in range(0, a.size, DOT_CHUNK))


class _Buffers:
    """Per-pass scratch chunks, allocated once per pass and shared by the terms of a pass."""

    def __init__(self, size):
        self._arrays = [np.empty(min(size, BLOCK_SIZE)) for _ in range(2)]

    def get(self, index, length):
        return self._arrays[index][:length]


class CenteredProducts:
    """Term: sum (a - ma)^2, sum (a - ma)(b - mb), sum (b - mb)^2 over the (saliency, density) pair."""

    def __init__(self, first_mean, second_mean):
        self.means = (first_mean, second_mean)
        self.sums = [0.0, 0.0, 0.0]

    def add(self, a_block, b_block, buffers):
        a, b = buffers.get(0, a_block.size), buffers.get(1, a_block.size)
        np.subtract(a_block, self.means[0], out=a)
        np.subtract(b_block, self.means[1], out=b)
        self.sums[0] += dot(a, a)
        self.sums[1] += dot(a, b)
        self.sums[2] += dot(b, b)

    def result(self):
        return tuple(float(value) for value in self.sums)


class KLSum:
    """Term: sum D * log(eps + D * ratio_scale / (S + saliency_eps)) (see `kl_sum`)."""

    def __init__(self, ratio_scale, saliency_eps, eps):
        self.ratio_scale, self.saliency_eps, self.eps = ratio_scale, saliency_eps, eps
        self.total = 0.0

    def add(self, s_block, d_block, buffers):
        ratio, denominator = buffers.get(0, s_block.size), buffers.get(1, s_block.size)
        np.add(s_block, self.saliency_eps, out=denominator)
        np.multiply(d_block, self.ratio_scale, out=ratio)
        np.divide(ratio, denominator, out=ratio)
        ratio += self.eps
        np.log(ratio, out=ratio)  # NaN for a negative ratio: the metric reports it
        self.total += dot(d_block, ratio)

    def result(self):
        return float(self.total)


class IntersectionSum:
    """Term: sum min(S - saliency_offset, (D - density_offset) * scale) (see `intersection_sum`)."""

    def __init__(self, saliency_offset, density_offset, scale):
        self.saliency_offset, self.density_offset, self.scale = saliency_offset, density_offset, scale
        self.total = 0.0

    def add(self, s_block, d_block, buffers):
        b = buffers.get(1, s_block.size)
        if self.density_offset:
            np.subtract(d_block, self.density_offset, out=b)
            b *= self.scale
        else:
            np.multiply(d_block, self.scale, out=b)
        if self.saliency_offset:
            a = buffers.get(0, s_block.size)
            np.subtract(s_block, self.saliency_offset, out=a)
        else:
            a = s_block
        np.minimum(a, b, out=b)
        self.total += b.sum()

    def result(self):
        return float(self.total)


def pair_pass(saliency, density, terms):
    """Accumulate every term over two maps of one shape in one pass, chunk by chunk.

    Each chunk of both maps goes through all the terms while it is in cache; a term's
    result is exactly what its own pass gives (same chunks, same operations, same order).

    Args:
        saliency, density: float64 maps of one shape.
        terms: `CenteredProducts`, `KLSum` and `IntersectionSum` instances.

    Returns:
        [term.result() for term in terms].
    """
    buffers = _Buffers(saliency.size)
    with np.errstate(divide="ignore", invalid="ignore"):  # KLD's log: see KLSum
        for s_block, d_block in blocks(saliency, density):
            for term in terms:
                term.add(s_block, d_block, buffers)
    return [term.result() for term in terms]


def centered_products(first, first_mean, second=None, second_mean=None):
    """Sums of products of deviations from the given means.

    Returns:
        (sum (a - ma)^2,) for one map; (sum (a - ma)^2, sum (a - ma)(b - mb), sum (b - mb)^2)
        for two maps of one shape.
    """
    if second is None:
        buffers = _Buffers(first.size)
        squares = 0.0
        for (a_block,) in blocks(first):
            a = buffers.get(0, a_block.size)
            np.subtract(a_block, first_mean, out=a)
            squares += dot(a, a)
        return (float(squares),)
    return pair_pass(first, second, [CenteredProducts(first_mean, second_mean)])[0]


def kl_sum(saliency, density, ratio_scale, saliency_eps, eps):
    """sum D * log(eps + D * ratio_scale / (S + saliency_eps)) over two maps of one shape.

    With ratio_scale = sum(S) / sum(D) and saliency_eps = eps * sum(S) this is sum(D) times
    KLdiv.m's sum Q log(eps + Q / (P + eps)), P = S / sum(S), Q = D / sum(D): one division
    per pixel instead of three. A negative ratio gives NaN (MATLAB: a complex number).
    """
    return pair_pass(saliency, density, [KLSum(ratio_scale, saliency_eps, eps)])[0]


def intersection_sum(saliency, saliency_offset, density, density_offset, scale):
    """sum min(S - saliency_offset, (D - density_offset) * scale) over two maps of one shape.

    SIM's sum min(P, Q) with P = (S - min S) / a, Q = (D - min D) / b equals this with
    scale = a / b, divided by a: two divisions per pixel fewer. Zero offsets are skipped
    (subtracting 0 changes nothing).
    """
    return pair_pass(saliency, density, [IntersectionSum(saliency_offset, density_offset, scale)])[0]
