"""ROC-area saliency metrics of the MIT benchmark: AUC-Judd, AUC-Borji and shuffled AUC.

Public through `keras_emlnet.metrics` (see its docstring for conventions). AUC-Judd uses every
non-fixated pixel as a negative; AUC-Borji and shuffled AUC draw negatives at random, split by
split (`keras_emlnet.metrics.auc_sampling` holds the thresholds and the exact expectation).
"""

import numpy as np
from numpy.typing import ArrayLike

from keras_emlnet.metrics import _checks as inputs
from keras_emlnet.metrics import auc_sampling, auc_thresholds

JUDD_JITTER_DIVISOR = 10_000_000  # AUC_Judd.m: rand(size) / 10000000
DEFAULT_SEED = 0
DEFAULT_N_SPLITS = 100  # AUC_Borji.m / AUC_shuffled.m Nsplits
DEFAULT_STEP_SIZE = 0.1  # AUC_Borji.m / AUC_shuffled.m stepSize
_JITTER_CHUNK = 32_768  # jitter drawn and added in cache-sized chunks


def _rng(seed):
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(DEFAULT_SEED if seed is None else seed)


def check_sampling(n_splits, step_size):
    """ValueError unless n_splits is None or a positive integer and step_size a usable step."""
    if n_splits is not None and (int(n_splits) != n_splits or n_splits < 1):
        raise ValueError(f"n_splits must be None or a positive integer, got {n_splits!r}")
    if not (np.isfinite(step_size) and step_size >= auc_sampling.MIN_STEP_SIZE):
        raise ValueError(f"step_size must be finite and >= {auc_sampling.MIN_STEP_SIZE}, got {step_size!r}")


def auc_judd(saliency_map: ArrayLike, fixation_map: ArrayLike, *, jitter: bool = True,
             seed: int | np.random.Generator | None = None) -> float:
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
    shape, fixated = inputs.fixation_points(fixation_map, "fixation_map")
    return auc_judd_of(inputs.CheckedMap(saliency_map, "saliency_map", shape), fixated, jitter=jitter, seed=seed)


def auc_judd_of(saliency, fixated, *, jitter=True, seed=None):
    """AUC-Judd of a `_checks.CheckedMap` at the flat `fixated` indices (see `auc_judd`)."""
    if fixated.size == 0:
        saliency.check()
        return float("nan")
    flat = saliency.flat
    tied_map = np.unique(flat[fixated]).size < fixated.size  # e.g. an 8-bit map: no 32-bit keys
    keys = None
    if jitter:
        values, low, high, keys = _jittered(flat, _rng(seed), _jitter_key_range(saliency, tied_map))
        saliency.require_finite(low, high)  # the jitter is finite: NaN or inf shows in these
    else:
        values = flat
        low, high = saliency.extremes
    spread = high - low
    if spread == 0:
        return float("nan")
    # MATLAB's thresholds: the min-max normalised map at the fixations, descending. The
    # normalisation is monotone, so sorting the raw values orders the thresholds (ties in the
    # normalised values, which share one count, aside).
    fixated_values = np.sort(values[fixated])
    above = auc_thresholds.count_normalized_at_least(
        values, low, spread, fixated_values, tied_map=tied_map, keys=keys
    )[::-1]
    num_fix, num_pix = fixated_values.size, values.size
    ranks = np.arange(1, num_fix + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fp = np.concatenate([[0.0], (above - ranks) / (num_pix - num_fix), [1.0]])
    tp = np.concatenate([[0.0], ranks / num_fix, [1.0]])
    return float(np.sum(np.diff(fp) * (tp[:-1] + tp[1:])) / 2.0)


def _jitter_key_range(saliency, tied_map):
    """KeyRange covering every jittered value, or None where AUC-Judd sorts float64 values.

    A jittered value s + u / 1e7 (u < 1) rounds to at most fl(max(s) + 2e-7) and is at least min(s).
    """
    if tied_map or saliency.size < auc_thresholds.MIN_PIXELS_FOR_KEYS:
        return None
    low, high = saliency.extremes  # checks the map: a bad value raises here
    return auc_thresholds.key_range(low, high + 2.0 / JUDD_JITTER_DIVISOR)


def _jittered(flat, rng, key_range=None):
    """flat + rng.random(flat.size) / JUDD_JITTER_DIVISOR with its min, max and (optionally) keys.

    Drawn, added, reduced and keyed chunk by chunk while each chunk is in cache.
    Generator.random fills consecutive chunks with the same numbers as one call for the
    whole size, so the jitter is exactly `default_rng(seed).random(size) / 1e7`.

    Returns:
        (values, min, max, keys): keys is (uint32 keys of values, key_range), or None
        without a key_range.
    """
    values = np.empty_like(flat)
    keys = np.empty(flat.size, dtype=np.uint32) if key_range else None
    buffer = np.empty(min(flat.size, _JITTER_CHUNK)) if key_range else None
    low, high = np.inf, -np.inf
    for start in range(0, flat.size, _JITTER_CHUNK):
        chunk = values[start : start + _JITTER_CHUNK]
        rng.random(out=chunk)
        chunk /= JUDD_JITTER_DIVISOR
        chunk += flat[start : start + _JITTER_CHUNK]
        low, high = np.minimum(low, chunk.min()), np.maximum(high, chunk.max())  # NaN propagates
        if key_range:
            auc_thresholds.keys_of(chunk, key_range, out=keys[start : start + _JITTER_CHUNK], buffer=buffer)
    return values, low, high, (keys, key_range) if key_range else None


def auc_borji(saliency_map: ArrayLike, fixation_map: ArrayLike, *, n_splits: int | None = DEFAULT_N_SPLITS,
              step_size: float = DEFAULT_STEP_SIZE, seed: int | np.random.Generator | None = None) -> float:
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
    check_sampling(n_splits, step_size)
    shape, fixated = inputs.fixation_points(fixation_map, "fixation_map")
    if fixated.size <= 1:
        return float("nan")
    saliency = inputs.CheckedMap(saliency_map, "saliency_map", shape)
    return auc_borji_of(saliency, fixated, n_splits=n_splits, step_size=step_size, seed=seed)


def auc_borji_of(saliency, fixated, *, n_splits=DEFAULT_N_SPLITS, step_size=DEFAULT_STEP_SIZE, seed=None):
    """AUC-Borji of a `_checks.CheckedMap` at the flat `fixated` indices (see `auc_borji`)."""
    check_sampling(n_splits, step_size)
    if fixated.size <= 1:
        return float("nan")
    low, high = saliency.extremes
    spread = high - low
    if spread == 0:
        return float("nan")
    values = saliency.flat
    positives = (values[fixated] - low) / spread
    if n_splits is None:
        # negatives come from every pixel: sort once, then normalise (monotone, keeps the order)
        pool = np.sort(values)
        pool -= low
        pool /= spread
        return auc_sampling.expected_auc(positives, pool, positives.size, step=step_size, replace=True)
    draws = _rng(seed).integers(0, values.size, size=(int(n_splits), positives.size))  # randi
    negatives = np.take(values, draws)  # = values[draws], faster
    negatives -= low
    negatives /= spread
    return float(np.mean(auc_sampling.split_aucs(positives, negatives, step_size)))


def auc_shuffled(
    saliency_map: ArrayLike, fixation_map: ArrayLike, other_map: ArrayLike, *,
    n_splits: int | None = DEFAULT_N_SPLITS, step_size: float = DEFAULT_STEP_SIZE, seed: int | np.random.Generator | None = None,
) -> float:
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
    check_sampling(n_splits, step_size)
    shape, fixated = inputs.fixation_points(fixation_map, "fixation_map")
    other_shape, others = inputs.fixation_points(other_map, "other_map")
    if other_shape != shape:
        raise ValueError(f"other_map shape {other_shape} differs from fixation_map shape {shape}")
    if fixated.size == 0:
        return float("nan")
    saliency = inputs.CheckedMap(saliency_map, "saliency_map", shape)
    return auc_shuffled_of(saliency, fixated, others, n_splits=n_splits, step_size=step_size, seed=seed)


def auc_shuffled_of(
    saliency, fixated, others, *, n_splits=DEFAULT_N_SPLITS, step_size=DEFAULT_STEP_SIZE, seed=None
):
    """Shuffled AUC of a `_checks.CheckedMap`, fixated and other-image flat indices (see `auc_shuffled`)."""
    check_sampling(n_splits, step_size)
    if fixated.size == 0:
        return float("nan")
    low, high = saliency.extremes
    spread = high - low
    if spread == 0 or others.size == 0:
        return float("nan")
    values = saliency.flat
    positives = (values[fixated] - low) / spread
    pool = np.sort((values[others] - low) / spread)
    num_draws = min(positives.size, pool.size)
    if n_splits is None:
        return auc_sampling.expected_auc(positives, pool, num_draws, step=step_size, replace=False)
    return auc_sampling.sampled_auc_without_replacement(
        positives, pool, num_draws, step=step_size, n_splits=int(n_splits), rng=_rng(seed)
    )
