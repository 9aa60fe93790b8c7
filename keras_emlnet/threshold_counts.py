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


def count_normalized_at_least(values, low, spread, thresholds, *, tied_map=False):
    """#{x in values : n(x) >= n(t)} for each t in `thresholds`, n(x) = (x - low) / spread.

    Args:
        values: 1-D float64 pixel values (not modified); low = min, spread = max - min > 0.
        thresholds: 1-D ascending float64 values, each one of `values`' elements with
            multiplicity (the fixated pixels' values).
        tied_map: the map has tied values (skip the 32-bit keys, which would collide).

    Returns:
        int64 counts, one per threshold, in the thresholds' order.
    """
    cut = cutoffs(thresholds, low, spread)
    if cut is None:
        normalized = _normalized(np.sort(values), low, spread)
        return values.size - np.searchsorted(normalized, _normalized(thresholds, low, spread), side="left")
    if values.size >= MIN_PIXELS_FOR_KEYS and not tied_map:
        counts = counts_by_key_sort(values, low, spread, thresholds, cut)
        if counts is not None:
            return counts
    return values.size - np.searchsorted(np.sort(values), cut, side="left")


def _keys(values, low, scale):
    """uint32 fixed-point keys of `values` (monotone in the value), chunk by chunk."""
    out = np.empty(values.size, dtype=np.uint32)
    buffer = np.empty(min(values.size, _BLOCK))
    for start in range(0, values.size, _BLOCK):
        chunk = buffer[: min(_BLOCK, values.size - start)]
        np.subtract(values[start : start + _BLOCK], low, out=chunk)
        chunk *= scale
        out[start : start + _BLOCK] = chunk  # truncation: keeps the order
    return out


def counts_by_key_sort(values, low, spread, thresholds, cut):
    """`count_normalized_at_least` through a sort of 32-bit keys, or None when keys collide too often.

    Args:
        values, low, spread, thresholds: as in `count_normalized_at_least`.
        cut: `cutoffs(thresholds, low, spread)`.
    """
    scale = _KEY_SPAN / spread
    if not np.isfinite(scale):
        return None
    ordered = _keys(values, low, scale)
    ordered.sort()
    cut_keys = _keys(cut, low, scale)
    threshold_keys = _keys(thresholds, low, scale)  # ascending, like the thresholds
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
        keys = _keys(values, low, scale)  # in pixel order again
        for key in shared_keys:  # other pixels share the bucket: compare its members exactly
            members = values[keys == key]
            for k in shared[cut_keys[shared] == key]:
                in_bucket[k] = np.count_nonzero(members >= cut[k])
    return (values.size - bucket_end) + in_bucket
