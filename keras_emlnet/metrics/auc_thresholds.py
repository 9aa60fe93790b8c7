"""AUC-Judd's counts: how many pixels reach each fixation's normalised value.

AUC_Judd.m min-max normalises the map, n(x) = (x - low) / spread (float64), and for each
fixated value t counts the pixels with n(x) >= n(t). n is monotone but not strictly (nearby
raw values can normalise to the same double), so {x : n(x) >= n(t)} = {x : x >= r} for the
cutoff r, the smallest double with n(r) >= n(t), found by stepping down from t one double at
a time. Counting raw values >= r then gives MATLAB's counts exactly without normalising the map.

Sorting the map is most of AUC-Judd's time, and sorting 32-bit keys is about twice as fast as
sorting float64. The keys k(x) = uint32((x - low) * (2^32 - 2^12) / spread) are monotone in x,
so the sorted keys settle every pixel except those sharing the cutoff's key. Such a pixel is
usually the fixated pixel itself (whose exact value we hold); the few others are looked up in
the map. Maps with tied values (8-bit images) collide too often: they take the float64 sort.
"""

from typing import NamedTuple

import numpy as np

# Doubles tried below a threshold before its cutoff is given up on (then everything is normalised).
_MAX_CUTOFF_STEPS = 8
# Below this many pixels the float64 sort is fast anyway.
MIN_PIXELS_FOR_KEYS = 65_536
# Keys span [0, 2^32 - 2^12]: rounding in (x - low) * scale cannot reach 2^32.
_KEY_SPAN = 2.0**32 - 2.0**12
# Key buckets shared with non-fixated pixels looked up in the map before the float64 sort wins.
_MAX_SHARED_BUCKETS = 4
_BLOCK = 32_768  # elements per chunk of key computation


def _normalized(values, low, spread):
    return (values - low) / spread  # AUC_Judd.m's (map - min) / (max - min), element by element


def cutoffs(thresholds, low, spread):
    """Smallest doubles r with n(r) >= n(t) for each threshold t, or None if one is far below t."""
    targets = _normalized(thresholds, low, spread)
    cut = thresholds.copy()
    for _ in range(_MAX_CUTOFF_STEPS):
        below = np.nextafter(cut, -np.inf)
        lower = _normalized(below, low, spread) >= targets
        if not lower.any():
            return cut
        cut[lower] = below[lower]
    return None


class KeyRange(NamedTuple):
    """The monotone map x -> uint32((x - low) * scale); keys stay below 2^32 up to the range's top."""

    low: float
    scale: float


def key_range(low, high):
    """KeyRange for values in [low, high], or None when its scale is not a finite number.

    fl(x - low) <= fl(high - low) for every x <= high (rounding is monotone), and
    (high - low) * (_KEY_SPAN / (high - low)) rounds to at most _KEY_SPAN (1 + 2^-51) < 2^32.
    """
    span = float(high) - float(low)
    scale = _KEY_SPAN / span if span > 0 else np.inf
    return KeyRange(float(low), scale) if np.isfinite(scale) else None


def keys_of(values, key_range, out=None, buffer=None):
    """uint32 keys of float64 `values` (monotone in the value), chunk by chunk.

    Args:
        values: 1-D float64 values within the key range.
        key_range: a `KeyRange`.
        out: optional uint32 array of values' size to write into.
        buffer: optional float64 scratch array of at least min(size, _BLOCK) elements.
    """
    out = np.empty(values.size, dtype=np.uint32) if out is None else out
    buffer = np.empty(min(values.size, _BLOCK)) if buffer is None else buffer
    for start in range(0, values.size, _BLOCK):
        chunk = buffer[: min(_BLOCK, values.size - start)]
        np.subtract(values[start : start + _BLOCK], key_range.low, out=chunk)
        chunk *= key_range.scale
        out[start : start + _BLOCK] = chunk  # truncation: keeps the order
    return out


def count_normalized_at_least(values, low, spread, thresholds, *, tied_map=False, keys=None):
    """#{x in values : n(x) >= n(t)} for each t in `thresholds`, n(x) = (x - low) / spread.

    Args:
        values: 1-D float64 pixel values (not modified); low = min, spread = max - min > 0.
        thresholds: 1-D ascending float64 values, each one of `values`' elements with
            multiplicity (the fixated pixels' values).
        tied_map: the map has tied values (skip the 32-bit keys, which would collide).
        keys: optional (uint32 keys of `values` in pixel order, their `KeyRange`), computed
            while the values were made; the keys array is sorted in place.

    Returns:
        int64 counts, one per threshold, in the thresholds' order.
    """
    cut = cutoffs(thresholds, low, spread)
    if cut is None:
        normalized = _normalized(np.sort(values), low, spread)
        return values.size - np.searchsorted(normalized, _normalized(thresholds, low, spread), side="left")
    if values.size >= MIN_PIXELS_FOR_KEYS and not tied_map:
        counts = counts_by_key_sort(values, low, spread, thresholds, cut, keys=keys)
        if counts is not None:
            return counts
    return values.size - np.searchsorted(np.sort(values), cut, side="left")


def counts_by_key_sort(values, low, spread, thresholds, cut, *, keys=None):
    """`count_normalized_at_least` through a sort of 32-bit keys, or None when keys collide too often.

    Args:
        values, low, spread, thresholds: as in `count_normalized_at_least`.
        cut: `cutoffs(thresholds, low, spread)`.
        keys: optional (uint32 keys of `values`, their `KeyRange`); the array is sorted in
            place. Default: keys over [low, low + spread].
    """
    if keys is None:
        scales = KeyRange(low, _KEY_SPAN / spread)
        if not np.isfinite(scales.scale):
            return None
        ordered = keys_of(values, scales)
    else:
        ordered, scales = keys
    ordered.sort()
    cut_keys = keys_of(cut, scales)
    threshold_keys = keys_of(thresholds, scales)  # ascending, like the thresholds
    bucket_start = np.searchsorted(ordered, cut_keys, side="left")
    bucket_end = np.searchsorted(ordered, cut_keys, side="right")
    # fixated values in each cutoff's bucket, and those of them >= the cutoff
    known_start = np.searchsorted(threshold_keys, cut_keys, side="left")
    known_end = np.searchsorted(threshold_keys, cut_keys, side="right")
    known_at_least = known_end - np.maximum(known_start, np.searchsorted(thresholds, cut, side="left"))
    in_bucket = known_at_least
    shared = np.flatnonzero(bucket_end - bucket_start != known_end - known_start)
    if shared.size:
        shared_keys = np.unique(cut_keys[shared])
        if shared_keys.size > _MAX_SHARED_BUCKETS:
            return None
        in_bucket = known_at_least.copy()
        pixel_keys = keys_of(values, scales)  # in pixel order again
        for key in shared_keys:  # other pixels share the bucket: compare its members exactly
            members = values[pixel_keys == key]
            for k in shared[cut_keys[shared] == key]:
                in_bucket[k] = np.count_nonzero(members >= cut[k])
    return (values.size - bucket_end) + in_bucket
