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
- float rounding differs (~1e-15 relative): sums run chunk by chunk
  (`keras_emlnet.blocked_reductions`); KLD and SIM fold their normalising divisions into one
  factor per map (see their docstrings); SIM and IG take sum(x - min(x)) as
  sum(x) - n*min(x) unless that loses digits (< ~1e-12 relative).
"""

import math

import numpy as np

from keras_emlnet import blocked_reductions as reductions
from keras_emlnet import imresize as imresize_lib
from keras_emlnet import metric_inputs as inputs
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
from keras_emlnet.blocked_reductions import blocks as _blocks

__all__ = ["auc_judd", "auc_borji", "auc_shuffled", "nss", "cc", "kld", "sim", "emd", "info_gain"]

EPS = 2.0**-52  # MATLAB's eps, used by KLdiv.m and InfoGain.m
EMD_DOWNSIZE = 32  # EMD.m: imresize(fixationMap, 1/downsize)
# sum(x) - n*min(x) is used for sum(x - min(x)) while it loses < 3 digits (error < ~1e-12).
_MAX_CANCELLATION = 1e3
_TINY = np.finfo(np.float64).tiny


def _shifted_sum(array, low, total):
    """sum(array - low) from total = sum(array), unless the subtraction would cancel digits."""
    offset = array.size * float(low)
    shifted = float(total) - offset
    if abs(total) + abs(offset) <= _MAX_CANCELLATION * abs(shifted):
        return shifted
    return float(sum(np.subtract(block, low).sum() for (block,) in _blocks(array)))


def _is_normal(*values):
    """Finite, nonzero and not subnormal: safe to fold into a rescaled formula (no lost digits)."""
    return all(math.isfinite(v) and abs(v) >= _TINY for v in values)


def nss(saliency_map, fixation_map):
    """Normalized scanpath saliency (NSS.m): mean z-scored saliency at the fixated pixels.

    Formula:
        NSS = mean_{F != 0} (S - mean(S)) / std(S)    (std with N - 1)

    Returns:
        NSS; NaN for a constant map or no fixations.
    """
    shape, fixated = inputs.fixation_points(fixation_map, "fixation_map")
    return nss_of(inputs.CheckedMap(saliency_map, "saliency_map", shape), fixated)


def nss_of(saliency, fixated, squares=None):
    """NSS of a `CheckedMap` at the flat `fixated` indices; `squares`: sum (S - mean S)^2 if known."""
    mean = saliency.total / saliency.size  # = saliency.mean(): the same pairwise sum
    if squares is None:
        squares = reductions.centered_products(saliency.array, mean)[0]
    std = np.sqrt(squares / (saliency.size - 1)) if saliency.size > 1 else 0.0
    if std == 0 or fixated.size == 0:
        return float("nan")
    return float(np.mean((saliency.flat[fixated] - mean) / std))


def cc(saliency_map, density_map):
    """Pearson's linear correlation coefficient (CC.m) between prediction and density.

    Formula:
        CC = sum((S - mean S)(D - mean D)) / sqrt(sum (S - mean S)^2 * sum (D - mean D)^2)

    Returns:
        CC; NaN when either map is constant.
    """
    density = inputs.CheckedMap(density_map, "density_map")
    return cc_and_squares(inputs.CheckedMap(saliency_map, "saliency_map", density.array.shape), density)[0]


def cc_and_squares(saliency, density):
    """(CC, sum (S - mean S)^2) of two `CheckedMap`s of one shape; NSS reuses the second."""
    scores, squares = pair_metrics_of(saliency, density, ("cc",))
    return scores["cc"], squares


def _cc_plan(saliency, density):
    term = reductions.CenteredProducts(saliency.total / saliency.size, density.total / density.size)

    def finish():
        saliency_squares, cross, density_squares = term.result()
        denominator = np.sqrt(saliency_squares * density_squares)
        return float("nan") if denominator == 0 else float(cross / denominator)

    return term, finish


def kld(saliency_map, density_map):
    """KL divergence of the prediction from the density (KLdiv.m), natural log, no shifting.

    Formula:
        P = S / sum(S), Q = D / sum(D)   (an all-zero map stays zero)
        KLD = sum Q * log(eps + Q / (P + eps)),  eps = 2^-52

    Computed as sum D * log(eps + D * (p/q) / (S + eps * p)) / q with p = sum(S), q = sum(D)
    (fewer divisions; equal up to rounding) whenever those factors are normal numbers.

    Raises:
        ValueError: a negative resized saliency value meets positive density, where MATLAB
            would return a complex number.
    """
    density = inputs.CheckedMap(density_map, "density_map")
    return kld_of(inputs.CheckedMap(saliency_map, "saliency_map", density.array.shape), density)


def kld_of(saliency_map, density_map):
    """KLD of two `CheckedMap`s of one shape (see `kld`)."""
    return pair_metrics_of(saliency_map, density_map, ("kld",))[0]["kld"]


def _kld_plan(saliency_map, density_map):
    saliency, p_total = saliency_map.array, saliency_map.total
    density, q_total = density_map.array, density_map.total
    # an all-zero map stays zero (MATLAB's `if any(map(:))`); the sum is zero then
    if p_total == 0 and not saliency.any():
        p_total = 1.0
    if q_total == 0 and not density.any():
        q_total = 1.0
    ratio_scale, saliency_eps = p_total / q_total, EPS * p_total
    term = None
    if _is_normal(p_total, q_total, ratio_scale, saliency_eps):
        term = reductions.KLSum(ratio_scale, saliency_eps, EPS)

    def finish():
        if term is not None:
            score = term.result() / q_total
        else:
            score = _kld_direct(saliency, density, p_total, q_total)
        if np.isnan(score) and _has_negative_ratio(saliency / p_total, density / q_total):
            raise ValueError("kld: the saliency map has negative values where the density is positive (complex log)")
        return float(score)

    return term, finish


def _kld_direct(saliency, density, p_total, q_total):
    """KLdiv.m's expression as written (used when the rescaled form could lose digits)."""
    score = 0.0
    for s_block, d_block in _blocks(saliency, density):
        q = d_block / q_total
        ratio = s_block / p_total
        ratio += EPS
        np.divide(q, ratio, out=ratio)
        ratio += EPS  # MATLAB's eps + map2 ./ (map1 + eps)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.log(ratio, out=ratio)  # NaN where the ratio is negative
        score += reductions.dot(q, ratio)
    return score


def _has_negative_ratio(p, q):
    return bool(np.any(((EPS + q / (p + EPS)) < 0) & (q != 0)))


def sim(saliency_map, density_map):
    """Similarity / histogram intersection (similarity.m).

    Formula:
        P = minmax(S) / sum(minmax(S)), Q likewise (an all-zero map stays zero)
        SIM = sum min(P, Q)

    Computed as sum min(S - min S, (D - min D) * a / b) / a with a = sum(S - min S),
    b = sum(D - min D) (equal up to rounding) whenever a and a / b are normal numbers.

    Returns:
        SIM; NaN when a map is constant and not all zero.
    """
    density = inputs.CheckedMap(density_map, "density_map")
    return sim_of(inputs.CheckedMap(saliency_map, "saliency_map", density.array.shape), density)


def sim_of(saliency_map, density_map):
    """SIM of two `CheckedMap`s of one shape (see `sim`)."""
    return pair_metrics_of(saliency_map, density_map, ("sim",))[0]["sim"]


def _sim_plan(saliency_map, density_map):
    saliency, density = saliency_map.array, density_map.array
    offsets, divisors = [], []  # MATLAB's (map - min) / (max - min) / sum(...), per map
    for checked in (saliency_map, density_map):
        (low, high), array = checked.extremes, checked.array
        if low == high == 0:  # an all-zero map stays zero
            offsets.append(0.0)
            divisors.append(1.0)
            continue
        if low == high:
            return None, lambda: float("nan")
        offsets.append(low)
        divisors.append(_shifted_sum(array, low, checked.total))  # = (max - min) * sum(minmax map)
    if _is_normal(divisors[0], divisors[0] / divisors[1]):
        term = reductions.IntersectionSum(offsets[0], offsets[1], divisors[0] / divisors[1])
        return term, lambda: float(term.result() / divisors[0])
    return None, lambda: _sim_direct(saliency, density, offsets, divisors)


def _sim_direct(saliency, density, offsets, divisors):
    """similarity.m's expression as written (used when the rescaled form could lose digits)."""
    score = 0.0
    for s_block, d_block in _blocks(saliency, density):
        a = np.subtract(s_block, offsets[0])
        a /= divisors[0]
        b = np.subtract(d_block, offsets[1])
        b /= divisors[1]
        score += np.minimum(a, b, out=a).sum()
    return float(score)


_PAIR_PLANS = {"kld": _kld_plan, "cc": _cc_plan, "sim": _sim_plan}


def pair_metrics_of(saliency, density, names):
    """KLD, CC and/or SIM of two `CheckedMap`s of one shape, in one pass over the two maps.

    Each value is exactly what `kld`, `cc` and `sim` return (each metric's chunked sum is
    the same; the chunks just go through all of them while in cache).

    Args:
        saliency, density: `metric_inputs.CheckedMap`s of one shape.
        names: any of "kld", "cc", "sim".

    Returns:
        ({name: score}, sum (S - mean S)^2 when "cc" is computed else None, for NSS).
    """
    plans = {name: _PAIR_PLANS[name](saliency, density) for name in names}
    terms = [term for term, _ in plans.values() if term is not None]
    if terms:
        reductions.pair_pass(saliency.array, density.array, terms)
    squares = plans["cc"][0].result()[0] if "cc" in plans else None
    return {name: finish() for name, (_, finish) in plans.items()}, squares


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
    small_density, density_total = _downsized(density_map, "density_map", scale=1.0 / EMD_DOWNSIZE)
    small_saliency, saliency_total = _downsized(saliency_map, "saliency_map", output_shape=small_density.shape)
    if density_total == 0 or saliency_total == 0:
        return float("nan")
    return transport.grid_emd(small_density / density_total, small_saliency / saliency_total)


def _downsized(value, name, **size):
    """(imresize(map, **size), its sum), the map's values checked through the small map's sum."""
    array = inputs.float_map(value, name)
    small = imresize_lib.imresize(array, **size)
    with np.errstate(over="ignore", invalid="ignore"):  # a bad map is reported below
        total = small.sum()
    if not (math.isfinite(total) and imresize_lib.uses_every_pixel(array.shape, **size)):
        inputs.require_finite(array, name, array.sum())
    return small, total


def info_gain(saliency_map, fixation_map, baseline_map):
    """Information gain over a baseline (InfoGain.m), in bits per fixation.

    Formula:
        P = minmax(S) / sum(minmax(S)), B likewise for the baseline (both resized to F)
        IG = mean_{F != 0} log2(eps + P) - log2(eps + B)

    Returns:
        IG; NaN for a constant saliency or baseline map, or no fixations.
    """
    shape, fixated = inputs.fixation_points(fixation_map, "fixation_map")
    if fixated.size == 0:
        return float("nan")
    saliency = inputs.CheckedMap(saliency_map, "saliency_map", shape)
    return info_gain_of(saliency, inputs.CheckedMap(baseline_map, "baseline_map", shape), fixated)


def info_gain_of(saliency, baseline, fixated):
    """IG of two `CheckedMap`s at the flat `fixated` indices (see `info_gain`)."""
    if fixated.size == 0:
        return float("nan")
    logs = []
    for checked in (saliency, baseline):
        (low, high), array = checked.extremes, checked.array
        spread = high - low
        if spread == 0:
            return float("nan")
        total = _shifted_sum(array, low, checked.total) / spread  # sum of MATLAB's minmax map
        at_fixations = (checked.flat[fixated] - low) / spread
        logs.append(np.log2(EPS + at_fixations / total))
    return float(np.mean(logs[0] - logs[1]))
