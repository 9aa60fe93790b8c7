"""Saliency metrics with the MIT saliency benchmark's semantics (cvzoya/saliency, code_forMetrics).

Each function takes 2-D arrays of any numeric (or bool) dtype, computes in float64 and
returns a float. As in the MATLAB code, the saliency map is first resized to the ground
truth's size with MATLAB's `imresize` (`keras_emlnet.imresize`: bicubic, antialiased,
replicated borders). Where MATLAB returns NaN (constant map, no fixations, ...) so do we; input
MATLAB would turn into garbage (wrong dimensionality, empty, NaN or infinite values, negative
fixation maps, mismatched shapes, a complex KL divergence) raises ValueError saying what is
wrong.

Randomness (AUC-Judd's jitter, AUC-Borji's and shuffled AUC's negative draws) comes from
`numpy.random.default_rng(seed)`; `seed=None` means the fixed DEFAULT_SEED, so every call is
reproducible. The draws follow MATLAB's distributions, not its random stream.
"""

import numpy as np

from keras_emlnet import imresize as imresize_lib
from keras_emlnet import sampled_auc
from keras_emlnet import transport
from keras_emlnet.metric_inputs import as_map as _as_map
from keras_emlnet.metric_inputs import blocks as _blocks
from keras_emlnet.metric_inputs import fixated_indices as _fixated
from keras_emlnet.metric_inputs import min_max as _min_max
from keras_emlnet.metric_inputs import resized as _resized

EPS = 2.0**-52  # MATLAB's eps, used by KLdiv.m and InfoGain.m
JUDD_JITTER_DIVISOR = 10_000_000  # AUC_Judd.m: rand(size) / 10000000
DEFAULT_SEED = 0
DEFAULT_N_SPLITS = 100  # AUC_Borji.m / AUC_shuffled.m Nsplits
DEFAULT_STEP_SIZE = 0.1  # AUC_Borji.m / AUC_shuffled.m stepSize
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


def _rng(seed):
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(DEFAULT_SEED if seed is None else seed)


def _check_sampling(n_splits, step_size):
    if n_splits is not None and (int(n_splits) != n_splits or n_splits < 1):
        raise ValueError(f"n_splits must be None or a positive integer, got {n_splits!r}")
    if not (np.isfinite(step_size) and step_size >= sampled_auc.MIN_STEP_SIZE):
        raise ValueError(f"step_size must be finite and >= {sampled_auc.MIN_STEP_SIZE}, got {step_size!r}")


def auc_judd(saliency_map, fixation_map, *, jitter=True, seed=None):
    """AUC-Judd: ROC area with every non-fixated pixel as a negative (AUC_Judd.m).

    Formula:
        S = minmax(saliency + U[0,1)/1e7 if jitter), thresholds t_i = sorted S at fixations
        tp_i = i / N_fix,  fp_i = (#{S >= t_i} - i) / (N_pix - N_fix)
        AUC = trapz([0, fp, 1], [0, tp, 1])

    Args:
        saliency_map: 2-D prediction (resized to the fixation map's size).
        fixation_map: 2-D binary map, fixated pixels > 0.
        jitter: add MATLAB's tiny uniform noise to break ties.
        seed: int, Generator or None (DEFAULT_SEED) for the jitter.

    Returns:
        The AUC; NaN without fixations, for a constant map, or when every pixel is fixated.
    """
    fixations = _as_map(fixation_map, "fixation_map", fixations=True)
    saliency = _resized(_as_map(saliency_map, "saliency_map"), fixations.shape)
    fixated = _fixated(fixations)
    if fixated.size == 0:
        return float("nan")
    if jitter:
        values = _rng(seed).random(saliency.size)
        values /= JUDD_JITTER_DIVISOR
        values += saliency.reshape(-1)
    else:
        values = saliency.flatten()
    fixated_values = values[fixated]
    # Sort the raw map once: min-max normalisation is monotone, so normalising the sorted
    # values gives MATLAB's normalised map in sorted order, and counting #{S >= t} is a search.
    values.sort()
    low, spread = values[0], values[-1] - values[0]
    if spread == 0:
        return float("nan")
    values -= low
    values /= spread
    thresholds = np.sort((fixated_values - low) / spread)[::-1]
    above = values.size - np.searchsorted(values, thresholds, side="left")
    num_fix, num_pix = thresholds.size, values.size
    ranks = np.arange(1, num_fix + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fp = np.concatenate([[0.0], (above - ranks) / (num_pix - num_fix), [1.0]])
    tp = np.concatenate([[0.0], ranks / num_fix, [1.0]])
    return float(np.sum(np.diff(fp) * (tp[:-1] + tp[1:])) / 2.0)


def _saliency_range(saliency_map, fixations):
    """Resized saliency map and its (min, max - min); range 0 means MATLAB's all-NaN map."""
    saliency = _resized(_as_map(saliency_map, "saliency_map"), fixations.shape)
    low = saliency.min()
    return saliency, low, saliency.max() - low


def auc_borji(saliency_map, fixation_map, *, n_splits=DEFAULT_N_SPLITS, step_size=DEFAULT_STEP_SIZE, seed=None):
    """AUC-Borji: negatives drawn uniformly, with replacement, from all pixels (AUC_Borji.m).

    Formula:
        per split: N_fix negatives r ~ U(pixels); thresholds fliplr(0:step:max([Sth; S(r)]))
        tp = mean(Sth >= t), fp = mean(S(r) >= t); AUC = mean over splits of trapz(fp, tp)

    Args:
        saliency_map: 2-D prediction (resized to the fixation map's size, then min-max).
        fixation_map: 2-D binary map, fixated pixels > 0.
        n_splits: number of random splits, or None for the exact expectation over splits.
        step_size: threshold step.
        seed: int, Generator or None (DEFAULT_SEED) for the draws.

    Returns:
        The AUC; NaN for fewer than two fixations or a constant map.
    """
    _check_sampling(n_splits, step_size)
    fixations = _as_map(fixation_map, "fixation_map", fixations=True)
    fixated = _fixated(fixations)
    if fixated.size <= 1:
        return float("nan")
    saliency, low, spread = _saliency_range(saliency_map, fixations)
    if spread == 0:
        return float("nan")
    values = saliency.reshape(-1)
    positives = (values[fixated] - low) / spread
    if n_splits is None:
        # negatives come from every pixel: sort once, then normalise (monotone, keeps the order)
        pool = np.sort(values)
        pool -= low
        pool /= spread
        return sampled_auc.expected_auc(positives, pool, positives.size, step=step_size, replace=True)
    draws = _rng(seed).integers(0, values.size, size=(int(n_splits), positives.size))  # randi
    negatives = values[draws]
    negatives -= low
    negatives /= spread
    return float(np.mean(sampled_auc.split_aucs(positives, negatives, step_size)))


def auc_shuffled(
    saliency_map, fixation_map, other_map, *, n_splits=DEFAULT_N_SPLITS, step_size=DEFAULT_STEP_SIZE, seed=None
):
    """Shuffled AUC: negatives are other images' fixations, drawn without replacement (AUC_shuffled.m).

    Formula:
        per split: min(N_fix, N_other) locations drawn without replacement from other_map > 0
        thresholds fliplr(0:step:max([Sth; negatives])); AUC = mean over splits of trapz(fp, tp)

    Args:
        saliency_map: 2-D prediction (resized to the fixation map's size, then min-max).
        fixation_map: 2-D binary map, fixated pixels > 0.
        other_map: 2-D binary map of the same shape (union of other images' fixations).
        n_splits: number of random splits, or None for the exact expectation over splits.
        step_size: threshold step.
        seed: int, Generator or None (DEFAULT_SEED) for the draws.

    Returns:
        The AUC; NaN without fixations, for a constant map, or an other_map without fixations.
    """
    _check_sampling(n_splits, step_size)
    fixations = _as_map(fixation_map, "fixation_map", fixations=True)
    others = _as_map(other_map, "other_map", fixations=True)
    if others.shape != fixations.shape:
        raise ValueError(f"other_map shape {others.shape} differs from fixation_map shape {fixations.shape}")
    fixated = _fixated(fixations)
    if fixated.size == 0:
        return float("nan")
    saliency, low, spread = _saliency_range(saliency_map, fixations)
    others = _fixated(others)
    if spread == 0 or others.size == 0:
        return float("nan")
    values = saliency.reshape(-1)
    positives = (values[fixated] - low) / spread
    pool = np.sort((values[others] - low) / spread)
    num_draws = min(positives.size, pool.size)
    if n_splits is None:
        return sampled_auc.expected_auc(positives, pool, num_draws, step=step_size, replace=False)
    return sampled_auc.sampled_auc_without_replacement(
        positives, pool, num_draws, step=step_size, n_splits=int(n_splits), rng=_rng(seed)
    )


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
