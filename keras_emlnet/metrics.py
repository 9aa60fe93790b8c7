"""Saliency metrics with the MIT saliency benchmark's semantics (cvzoya/saliency, code_forMetrics).

Each function takes 2-D arrays of any numeric (or bool) dtype, computes in float64 and
returns a float. As in the MATLAB code, the saliency map is first resized to the ground
truth's size with MATLAB's `imresize` (`keras_emlnet.imresize`: bicubic, antialiased,
replicated borders); to score many metrics on one pair at another size, resize once with
`imresize(saliency, output_shape=truth.shape)` and pass that. Where MATLAB returns NaN
(constant map, no fixations, ...) so do we; input MATLAB would turn into garbage (wrong
dimensionality, empty, NaN or infinite values, negative fixation maps, mismatched shapes, a
complex KL divergence) raises ValueError saying what is wrong.

Randomness (AUC-Judd's jitter, AUC-Borji's and shuffled AUC's negative draws) comes from
`numpy.random.default_rng(seed)`; `seed=None` means the fixed DEFAULT_SEED, so every call is
reproducible. `n_splits=None` gives the exact expectation over the random splits.

Deliberate differences from the MATLAB code (all documented where they apply):
- random streams: same distributions as MATLAB's rand/randi/randperm, not its generator;
- EMD is the exact transport optimum; FastEMD rounds masses and distances to 1e-6 of their
  maxima first, so MATLAB's EMD differs by ~1e-6 relative;
- integer inputs are used as float64 values; MATLAB's imresize would round and saturate an
  integer-class map it resizes (im2double's 1/255 scaling does not change any score);
- float summation order differs (~1e-15 relative); SIM and IG take sum(x - min(x)) as
  sum(x) - n*min(x) unless that loses digits (< ~1e-12 relative), and SIM divides once by
  (max - min) * sum(minmax map) instead of twice.
"""

import numpy as np

from keras_emlnet import imresize as imresize_lib
from keras_emlnet import transport
from keras_emlnet.auc import (  # noqa: F401  (public API of this module)
    DEFAULT_N_SPLITS,
    DEFAULT_SEED,
    DEFAULT_STEP_SIZE,
    JUDD_JITTER_DIVISOR,
    auc_borji,
    auc_judd,
    auc_shuffled,
)
from keras_emlnet.metric_inputs import as_map as _as_map
from keras_emlnet.metric_inputs import blocks as _blocks
from keras_emlnet.metric_inputs import fixated_indices as _fixated
from keras_emlnet.metric_inputs import resized as _resized

__all__ = ["auc_judd", "auc_borji", "auc_shuffled", "nss", "cc", "kld", "sim", "emd", "info_gain"]

EPS = 2.0**-52  # MATLAB's eps, used by KLdiv.m and InfoGain.m
EMD_DOWNSIZE = 32  # EMD.m: imresize(fixationMap, 1/downsize)
# sum(x) - n*min(x) is used for sum(x - min(x)) while it loses < 3 digits (error < ~1e-12).
_MAX_CANCELLATION = 1e3


def _shifted_sum(array, low):
    """sum(array - low): sum(array) - n * low unless that subtraction would cancel digits."""
    total = float(array.sum())
    offset = array.size * float(low)
    shifted = total - offset
    if abs(total) + abs(offset) <= _MAX_CANCELLATION * abs(shifted):
        return shifted
    return float(sum(np.subtract(block, low).sum() for (block,) in _blocks(array)))


def _dot(a, b):
    # einsum, not np.dot: BLAS may hand a 16k-element dot to worker threads, which costs far
    # more than the sum itself when the cores are busy.
    return float(np.einsum("i,i->", a, b))


def nss(saliency_map, fixation_map):
    """Normalized scanpath saliency (NSS.m): mean z-scored saliency at the fixated pixels.

    Formula:
        NSS = mean_{F != 0} (S - mean(S)) / std(S)    (std with N - 1)

    Returns:
        NSS; NaN for a constant map or no fixations.
    """
    fixations = _as_map(fixation_map, "fixation_map", fixations=True)
    saliency = _resized(_as_map(saliency_map, "saliency_map"), fixations.shape)
    fixated = _fixated(fixations)
    mean = saliency.mean()
    squares = sum(_dot(d, d) for d in (block - mean for (block,) in _blocks(saliency)))
    std = np.sqrt(squares / (saliency.size - 1)) if saliency.size > 1 else 0.0
    if std == 0 or fixated.size == 0:
        return float("nan")
    return float(np.mean((saliency.ravel()[fixated] - mean) / std))


def cc(saliency_map, density_map):
    """Pearson's linear correlation coefficient (CC.m) between prediction and density.

    Formula:
        CC = sum((S - mean S)(D - mean D)) / sqrt(sum (S - mean S)^2 * sum (D - mean D)^2)

    Returns:
        CC; NaN when either map is constant.
    """
    density = _as_map(density_map, "density_map")
    saliency = _resized(_as_map(saliency_map, "saliency_map"), density.shape)
    saliency_mean, density_mean = saliency.mean(), density.mean()
    cross = saliency_squares = density_squares = 0.0
    for s_block, d_block in _blocks(saliency, density):
        a, b = s_block - saliency_mean, d_block - density_mean
        cross += _dot(a, b)
        saliency_squares += _dot(a, a)
        density_squares += _dot(b, b)
    denominator = np.sqrt(saliency_squares * density_squares)
    if denominator == 0:
        return float("nan")
    return float(cross / denominator)


def kld(saliency_map, density_map):
    """KL divergence of the prediction from the density (KLdiv.m), natural log, no shifting.

    Formula:
        P = S / sum(S), Q = D / sum(D)   (an all-zero map stays zero)
        KLD = sum Q * log(eps + Q / (P + eps)),  eps = 2^-52

    Raises:
        ValueError: a negative resized saliency value meets positive density, where MATLAB
            would return a complex number.
    """
    density = _as_map(density_map, "density_map")
    saliency = _resized(_as_map(saliency_map, "saliency_map"), density.shape)
    # an all-zero map stays zero (MATLAB's `if any(map(:))`)
    p_total = saliency.sum() if saliency.any() else 1.0
    q_total = density.sum() if density.any() else 1.0
    score = 0.0
    for s_block, d_block in _blocks(saliency, density):
        q = d_block / q_total
        ratio = s_block / p_total
        ratio += EPS
        np.divide(q, ratio, out=ratio)
        ratio += EPS  # MATLAB's eps + map2 ./ (map1 + eps)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.log(ratio, out=ratio)  # NaN where the ratio is negative
        score += _dot(q, ratio)
    if np.isnan(score) and _has_negative_ratio(saliency / p_total, density / q_total):
        raise ValueError("kld: the saliency map has negative values where the density is positive (complex log)")
    return float(score)


def _has_negative_ratio(p, q):
    return bool(np.any(((EPS + q / (p + EPS)) < 0) & (q != 0)))


def sim(saliency_map, density_map):
    """Similarity / histogram intersection (similarity.m).

    Formula:
        P = minmax(S) / sum(minmax(S)), Q likewise (an all-zero map stays zero)
        SIM = sum min(P, Q)

    Returns:
        SIM; NaN when a map is constant and not all zero.
    """
    density = _as_map(density_map, "density_map")
    saliency = _resized(_as_map(saliency_map, "saliency_map"), density.shape)
    offsets, divisors = [], []  # MATLAB's (map - min) / (max - min) / sum(...), per map
    for array in (saliency, density):
        low, high = array.min(), array.max()
        if low == high == 0:  # an all-zero map stays zero
            offsets.append(0.0)
            divisors.append(1.0)
            continue
        if low == high:
            return float("nan")
        offsets.append(low)
        divisors.append(_shifted_sum(array, low))  # = (max - min) * sum(minmax map)
    score = 0.0
    for s_block, d_block in _blocks(saliency, density):
        a = np.subtract(s_block, offsets[0])
        a /= divisors[0]
        b = np.subtract(d_block, offsets[1])
        b /= divisors[1]
        score += np.minimum(a, b, out=a).sum()
    return float(score)


def emd(saliency_map, density_map):
    """Earth mover's distance (EMD.m) between the density and the prediction at 1/32 size.

    Formula:
        P = imresize(D, 1/32), Q = imresize(S, size(P)); P /= sum P, Q /= sum Q (signed)
        EMD = min transport cost from P to Q, ground distance Euclidean in (downsized) pixels

    Solved exactly (`keras_emlnet.transport`); MATLAB's FastEMD quantises masses and
    distances to 1e-6 of their maxima, so it differs by ~1e-6 relative.

    Returns:
        EMD; NaN when either downsized map sums to zero.
    """
    density = _as_map(density_map, "density_map")
    saliency = _as_map(saliency_map, "saliency_map")
    small_density = imresize_lib.imresize(density, scale=1.0 / EMD_DOWNSIZE)
    small_saliency = imresize_lib.imresize(saliency, output_shape=small_density.shape)
    totals = small_density.sum(), small_saliency.sum()
    if totals[0] == 0 or totals[1] == 0:
        return float("nan")
    return transport.grid_emd(small_density / totals[0], small_saliency / totals[1])


def info_gain(saliency_map, fixation_map, baseline_map):
    """Information gain over a baseline (InfoGain.m), in bits per fixation.

    Formula:
        P = minmax(S) / sum(minmax(S)), B likewise for the baseline (both resized to F)
        IG = mean_{F != 0} log2(eps + P) - log2(eps + B)

    Returns:
        IG; NaN for a constant saliency or baseline map, or no fixations.
    """
    fixations = _as_map(fixation_map, "fixation_map", fixations=True)
    fixated = _fixated(fixations)
    if fixated.size == 0:
        return float("nan")
    logs = []
    for value, name in ((saliency_map, "saliency_map"), (baseline_map, "baseline_map")):
        array = _resized(_as_map(value, name), fixations.shape)
        low, spread = array.min(), array.max() - array.min()
        if spread == 0:
            return float("nan")
        total = _shifted_sum(array, low) / spread  # sum of MATLAB's minmax map
        at_fixations = (array.ravel()[fixated] - low) / spread
        logs.append(np.log2(EPS + at_fixations / total))
    return float(np.mean(logs[0] - logs[1]))
