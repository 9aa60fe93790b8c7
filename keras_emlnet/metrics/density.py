"""CC, KLD and SIM: a prediction against a fixation density map, the three in one pass.

Public through `keras_emlnet.metrics` (see its docstring for conventions). Each metric is a
plan: a `_reductions` term (the chunked whole-map sum it needs) and a finish (the
formula around that sum). `pair_metrics_of` runs the terms of several metrics in one pass over
the two maps (`_reductions.pair_pass`), so each sum is exactly its own pass's and the
maps are read once; `cc`, `kld` and `sim` are that with one name.
"""

import math

import numpy as np
from numpy.typing import ArrayLike

from keras_emlnet.metrics import _checks as inputs
from keras_emlnet.metrics import _reductions as reductions
from keras_emlnet.metrics._reductions import blocks as _blocks
from keras_emlnet.metrics._reductions import shifted_sum

EPS = 2.0**-52  # MATLAB's eps, used by KLdiv.m and InfoGain.m
_TINY = np.finfo(np.float64).tiny


def _is_normal(*values):
    """Finite, nonzero and not subnormal: safe to fold into a rescaled formula (no lost digits)."""
    return all(math.isfinite(v) and abs(v) >= _TINY for v in values)


def cc(saliency_map: ArrayLike, density_map: ArrayLike) -> float:
    """Pearson's linear correlation coefficient (CC.m) between prediction and density.

    Formula:
        CC = sum((S - mean S)(D - mean D)) / sqrt(sum (S - mean S)^2 * sum (D - mean D)^2)

    Returns:
        CC; NaN when either map is constant.
    """
    return _density_metric("cc", saliency_map, density_map)


def _density_metric(name, saliency_map, density_map):
    """One of `pair_metrics_of`'s metrics of a prediction against a density map."""
    density = inputs.CheckedMap(density_map, "density_map")
    saliency = inputs.CheckedMap(saliency_map, "saliency_map", density.array.shape)
    return pair_metrics_of(saliency, density, (name,))[0][name]


def _cc_plan(saliency, density):
    term = reductions.CenteredProducts(saliency.total / saliency.size, density.total / density.size)

    def finish():
        saliency_squares, cross, density_squares = term.result()
        denominator = np.sqrt(saliency_squares * density_squares)
        return float("nan") if denominator == 0 else float(cross / denominator)

    return term, finish


def kld(saliency_map: ArrayLike, density_map: ArrayLike) -> float:
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
    return _density_metric("kld", saliency_map, density_map)


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


def sim(saliency_map: ArrayLike, density_map: ArrayLike) -> float:
    """Similarity / histogram intersection (similarity.m).

    Formula:
        P = minmax(S) / sum(minmax(S)), Q likewise (an all-zero map stays zero)
        SIM = sum min(P, Q)

    Computed as sum min(S - min S, (D - min D) * a / b) / a with a = sum(S - min S),
    b = sum(D - min D) (equal up to rounding) whenever a and a / b are normal numbers.

    Returns:
        SIM; NaN when a map is constant and not all zero.
    """
    return _density_metric("sim", saliency_map, density_map)


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
        divisors.append(shifted_sum(array, low, checked.total))  # = (max - min) * sum(minmax map)
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
        saliency, density: `_checks.CheckedMap`s of one shape.
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
