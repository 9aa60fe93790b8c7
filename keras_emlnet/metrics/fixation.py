"""NSS and information gain: scores read at the fixated pixels (NSS.m, InfoGain.m).

Public through `keras_emlnet.metrics` (see its docstring for conventions). Each public function
checks its inputs and calls a core on `_checks.CheckedMap`s (`nss_of`, `info_gain_of`), which
`keras_emlnet.metrics.suite.score_all` calls with maps it has checked and reduced once.
"""

import numpy as np
from numpy.typing import ArrayLike

from keras_emlnet.metrics import _checks as inputs
from keras_emlnet.metrics import _reductions as reductions
from keras_emlnet.metrics import density


def nss(saliency_map: ArrayLike, fixation_map: ArrayLike) -> float:
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


def info_gain(saliency_map: ArrayLike, fixation_map: ArrayLike, baseline_map: ArrayLike) -> float:
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
        logs.append(np.log2(density.EPS + at_fixations / total))
    return float(np.mean(logs[0] - logs[1]))
