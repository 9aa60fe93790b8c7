"""AUC-Judd's threshold counts (keras_emlnet.metrics.auc_thresholds) against normalising every pixel.

The reference is AUC_Judd.m's own computation: min-max normalise the whole map, then count
S >= t for each fixated value t. Every path (32-bit key sort, keys with shared buckets, float64
sort, normalise-everything) must give exactly those integers, ties included.
"""

import numpy as np
import pytest

from keras_emlnet.metrics import auc_thresholds as tc


def reference_counts(values, thresholds):
    low, spread = values.min(), values.max() - values.min()
    normalized = (values - low) / spread
    return np.array([np.count_nonzero(normalized >= (t - low) / spread) for t in thresholds])


def setup(values, fixated):
    low, spread = values.min(), values.max() - values.min()
    return low, spread, np.sort(values[fixated])


@pytest.fixture(scope="module")
def smooth():
    """A continuous map large enough for the key sort, values concentrated like a blurred map."""
    rng = np.random.default_rng(0)
    values = 0.06 + 0.01 * rng.random(tc.MIN_PIXELS_FOR_KEYS + 1001) ** 3
    fixated = rng.choice(values.size, 300, replace=False)
    return values, fixated


def test_key_sort_gives_the_reference_counts(smooth):
    values, fixated = smooth
    low, spread, thresholds = setup(values, fixated)
    cut = tc.cutoffs(thresholds, low, spread)
    counts = tc.counts_by_key_sort(values, low, spread, thresholds, cut)
    assert counts is not None  # the fast path is taken for such a map
    np.testing.assert_array_equal(counts, reference_counts(values, thresholds))
    np.testing.assert_array_equal(tc.count_normalized_at_least(values, low, spread, thresholds), counts)


def test_pixels_sharing_a_threshold_key_are_compared_exactly(smooth):
    values, fixated = smooth
    values = values.copy()
    # non-fixated pixels one double above, equal to and one double below three thresholds
    others = np.setdiff1d(np.arange(values.size), fixated)[:9]
    picks = fixated[[10, 150, 290]]
    values[others[0:3]] = np.nextafter(values[picks], np.inf)
    values[others[3:6]] = values[picks]
    values[others[6:9]] = np.nextafter(values[picks], -np.inf)
    low, spread, thresholds = setup(values, fixated)
    counts = tc.counts_by_key_sort(values, low, spread, thresholds, tc.cutoffs(thresholds, low, spread))
    assert counts is not None
    np.testing.assert_array_equal(counts, reference_counts(values, thresholds))


def test_too_many_shared_keys_fall_back_to_the_float64_sort(smooth):
    values, fixated = smooth
    values = values.copy()
    others = np.setdiff1d(np.arange(values.size), fixated)[:50]
    values[others] = values[fixated[:50]]  # 50 thresholds each tied with another pixel
    low, spread, thresholds = setup(values, fixated)
    assert tc.counts_by_key_sort(values, low, spread, thresholds, tc.cutoffs(thresholds, low, spread)) is None
    np.testing.assert_array_equal(
        tc.count_normalized_at_least(values, low, spread, thresholds), reference_counts(values, thresholds)
    )


@pytest.mark.parametrize("size", [500, tc.MIN_PIXELS_FOR_KEYS + 7])
def test_quantised_maps_count_every_tie(size):
    rng = np.random.default_rng(1)
    values = np.round(rng.random(size) * 255) / 255  # an 8-bit map: thousands of ties per level
    fixated = rng.choice(size, 200, replace=False)
    low, spread, thresholds = setup(values, fixated)
    expected = reference_counts(values, thresholds)
    for tied_map in (True, False):  # the hint only chooses the path
        np.testing.assert_array_equal(
            tc.count_normalized_at_least(values, low, spread, thresholds, tied_map=tied_map), expected
        )


def test_values_that_normalise_to_the_same_double_count_together():
    # min -1: x - min rounds every tiny x to 1.0, so distinct raw values tie after normalising
    rng = np.random.default_rng(2)
    tiny = rng.random(tc.MIN_PIXELS_FOR_KEYS) * 1e-17
    values = np.concatenate([[-1.0, 3.0], tiny, 1e-3 * rng.random(1000)])
    fixated = np.array([2, 3, 4, 100, values.size - 1, values.size - 2])
    low, spread, thresholds = setup(values, fixated)
    assert len(set(thresholds[:4])) == 4 and len(set((thresholds[:4] - low) / spread)) == 1
    np.testing.assert_array_equal(
        tc.count_normalized_at_least(values, low, spread, thresholds), reference_counts(values, thresholds)
    )


def test_cutoffs_are_the_smallest_doubles_reaching_each_target():
    values = np.array([0.0, 0.3, 0.7, 2.0, 1e-3, 0.5 + 1e-16])
    low, spread = 0.0, 2.0
    cut = tc.cutoffs(values, low, spread)
    targets = (values - low) / spread
    assert np.all((cut - low) / spread >= targets)
    assert np.all((np.nextafter(cut, -np.inf) - low) / spread < targets)
    # a long run of raw values sharing one normalised value: no cutoff within the step limit
    assert tc.cutoffs(np.array([1e-20]), -1.0, 4.0) is None


def test_long_tie_runs_normalise_everything():
    # values in [0, 1e-20] all normalise to 0.25 when low = -1 and spread = 4: cutoffs give up
    values = np.concatenate([[-1.0, 3.0], np.linspace(0, 1e-20, 1000)])
    fixated = np.array([5, 500, 1001])
    low, spread, thresholds = setup(values, fixated)
    np.testing.assert_array_equal(
        tc.count_normalized_at_least(values, low, spread, thresholds), reference_counts(values, thresholds)
    )


@pytest.mark.parametrize("size", [2000, tc.MIN_PIXELS_FOR_KEYS + 3])
def test_a_raw_value_below_a_threshold_that_normalises_to_it_is_counted(size):
    # spread 1.5: values in [0.75, 1) are 1.5 doubles per normalised double, so the double
    # just below a threshold often normalises to the threshold's own value
    rng = np.random.default_rng(3)
    values = np.concatenate([[0.0, 1.5], 0.75 + 0.25 * rng.random(size - 2)])
    fixated = rng.choice(np.arange(2, size), 40, replace=False)
    low, spread, thresholds = setup(values, fixated)
    cut = tc.cutoffs(thresholds, low, spread)
    lowered = np.flatnonzero(cut < thresholds)[:3]
    assert lowered.size == 3  # the stepping matters for this map
    others = np.setdiff1d(np.arange(2, size), fixated)[:3]
    values[others] = cut[lowered]  # raw value below the threshold, same normalised value
    low, spread, thresholds = setup(values, fixated)
    expected = reference_counts(values, thresholds)
    np.testing.assert_array_equal(tc.count_normalized_at_least(values, low, spread, thresholds), expected)
    assert np.any(expected > values.size - np.searchsorted(np.sort(values), thresholds))  # raw counts miss them
    if size >= tc.MIN_PIXELS_FOR_KEYS:  # resolved inside the key sort (shared buckets), no fallback
        keyed = tc.counts_by_key_sort(values, low, spread, thresholds, tc.cutoffs(thresholds, low, spread))
        np.testing.assert_array_equal(keyed, expected)
