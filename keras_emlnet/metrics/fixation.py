"""Saliency metrics with the MIT saliency benchmark's semantics (cvzoya/saliency, code_forMetrics).

Each function takes 2-D arrays of any numeric (or bool) dtype, computes in float64 and
returns a float. As in the MATLAB code, the saliency map is first resized to the ground
truth's size with MATLAB's `imresize` (`keras_emlnet.metrics.imresize`: bicubic, antialiased,
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
  (`keras_emlnet.metrics._reductions`); KLD and SIM fold their normalising divisions into one
  factor per map (see their docstrings); SIM and IG take sum(x - min(x)) as
  sum(x) - n*min(x) unless that loses digits (< ~1e-12 relative).
"""

import math

import numpy as np

from keras_emlnet.metrics import _reductions as reductions
from keras_emlnet.metrics import imresize as imresize_lib
from keras_emlnet.metrics import _checks as inputs
from keras_emlnet.metrics import earth_mover as transport
from keras_emlnet.metrics.auc import (  # noqa: F401  (public API of this module)
    DEFAULT_N_SPLITS,
    DEFAULT_SEED,
    DEFAULT_STEP_SIZE,
    JUDD_JITTER_DIVISOR,
    auc_borji,
    auc_judd,
    auc_shuffled,
)
from keras_emlnet.metrics.density import EPS, cc, kld, pair_metrics_of, sim  # noqa: F401  (public API)

__all__ = ["auc_judd", "auc_borji", "auc_shuffled", "nss", "cc", "kld", "sim", "emd", "info_gain"]

EMD_DOWNSIZE = 32  # EMD.m: imresize(fixationMap, 1/downsize)


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


def emd(saliency_map, density_map):
    """Earth mover's distance (EMD.m) between the density and the prediction at 1/32 size.

    Formula:
        P = imresize(D, 1/32), Q = imresize(S, size(P)); P /= sum P, Q /= sum Q (signed)
        EMD = min transport cost from P to Q, ground distance Euclidean in (downsized) pixels

    Solved exactly (`keras_emlnet.metrics.earth_mover`); MATLAB's FastEMD quantises masses and
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
        total = reductions.shifted_sum(array, low, checked.total) / spread  # sum of MATLAB's minmax map
        at_fixations = (checked.flat[fixated] - low) / spread
        logs.append(np.log2(EPS + at_fixations / total))
    return float(np.mean(logs[0] - logs[1]))
