"""AUC-Judd, AUC-Borji and shuffled AUC (keras_emlnet.metrics.auc, public via keras_emlnet.metrics)
against hand-computed ROC curves, line-by-line MATLAB ports and exhaustive enumeration."""

import itertools

import numpy as np
import pytest
import scipy.ndimage

from keras_emlnet import metrics
from keras_emlnet.metrics import auc
from keras_emlnet.metrics import auc_thresholds
from tests.metrics import matlab_reference as ref

SHAPE = (24, 32)


@pytest.fixture(scope="module")
def maps():
    return ref.example_maps(SHAPE)


def test_auc_judd_hand_case():
    # fixations at 1.0 and 0.3; negatives 0, .4, .2, .6 -> thresholds 1.0: (fp 0, tp .5),
    # 0.3: four values >= .3, two of them fixations -> (fp 2/4, tp 1); trapz -> .375 + .5
    sal = np.array([[0.0, 0.4, 0.3], [1.0, 0.2, 0.6]])
    fix = np.array([[0, 0, 1], [1, 0, 0]])
    assert metrics.auc_judd(sal, fix, jitter=False) == pytest.approx(0.875, abs=1e-15)


def test_auc_judd_matches_port_without_and_with_jitter(maps):
    sal, fix = maps["sal"], maps["fix"]
    assert metrics.auc_judd(sal, fix, jitter=False) == pytest.approx(ref.auc_judd(sal, fix), abs=1e-14)
    noise = np.random.default_rng(5).random(SHAPE)  # the documented jitter: default_rng(seed).random
    assert metrics.auc_judd(sal, fix, seed=5) == pytest.approx(ref.auc_judd(sal, fix, noise), abs=1e-14)


def test_auc_borji_expectation_equals_enumeration_of_all_draws():
    sal = np.array([[0.0, 0.2, 0.6], [0.6, 1.0, 0.35]])  # on-grid values: MATLAB ties matter
    fix = np.array([[0, 0, 1], [0, 0, 1]])
    values = ref.normalized_for_auc(sal)
    positives = values[fix.ravel() > 0]
    draws = itertools.product(range(values.size), repeat=positives.size)  # 36 equally likely
    exact = np.mean([ref.split_auc(positives, values[list(d)], 0.1) for d in draws])
    assert metrics.auc_borji(sal, fix, n_splits=None) == pytest.approx(exact, abs=1e-13)


def test_auc_shuffled_expectation_equals_enumeration_of_all_draws():
    sal = np.array([[0.0, 0.2, 0.6], [0.6, 1.0, 0.35]])
    fix = np.array([[0, 0, 1], [0, 0, 1]])
    other = np.array([[1, 1, 0], [1, 1, 1]])  # 5 locations, 2 drawn without replacement
    values = ref.normalized_for_auc(sal)
    positives, pool = values[fix.ravel() > 0], values[other.ravel() > 0]
    exact = np.mean([ref.split_auc(positives, pool[list(c)], 0.1) for c in itertools.combinations(range(5), 2)])
    assert metrics.auc_shuffled(sal, fix, other, n_splits=None) == pytest.approx(exact, abs=1e-13)


@pytest.mark.parametrize("name", ["auc_borji", "auc_shuffled"])
def test_expectation_equals_mean_of_seeded_splits_within_standard_error(maps, name):
    args = (maps["sal"], maps["fix"]) + ((maps["oth"],) if name == "auc_shuffled" else ())
    fn = getattr(metrics, name)
    expected = fn(*args, n_splits=None)
    means = np.array([fn(*args, n_splits=25, seed=seed) for seed in range(200)])
    standard_error = means.std(ddof=1) / np.sqrt(means.size)
    assert standard_error > 0
    assert abs(means.mean() - expected) < 4 * standard_error
    assert fn(*args, seed=3) == fn(*args, seed=3)  # seeded runs repeat exactly
    assert fn(*args) == fn(*args, seed=metrics.DEFAULT_SEED)


def test_auc_borji_split_law_matches_port_draws(maps):
    # MATLAB's randi over all pixels, split by split, averages to the exact expectation
    values = ref.normalized_for_auc(maps["sal"])
    positives = values[maps["fix"].ravel() > 0]
    rng = np.random.default_rng(9)
    port = np.array([ref.split_auc(positives, values[rng.integers(0, values.size, positives.size)], 0.1) for _ in range(1500)])
    expected = metrics.auc_borji(maps["sal"], maps["fix"], n_splits=None)
    assert abs(port.mean() - expected) < 4 * port.std(ddof=1) / np.sqrt(port.size)


def test_auc_judd_ties_follow_the_port(maps):
    # 8-bit style map: many pixels share each fixation's value (all counted by S >= t)
    sal = np.round(maps["sal"] / maps["sal"].max() * 12)
    assert metrics.auc_judd(sal, maps["fix"], jitter=False) == pytest.approx(ref.auc_judd(sal, maps["fix"]), abs=1e-14)


# ------------------------------------------------- maps large enough for the fast counting paths

LARGE = (256, 320)  # 81,920 pixels: AUC-Judd sorts 32-bit keys (keras_emlnet.metrics.auc_thresholds)


@pytest.fixture(scope="module")
def large_maps():
    rng = np.random.default_rng(11)
    saliency = scipy.ndimage.gaussian_filter(rng.random(LARGE), 8.0) ** 4  # values bunched together
    fixations = np.zeros(LARGE)
    fixations[rng.integers(0, LARGE[0], 150), rng.integers(0, LARGE[1], 150)] = 1
    return saliency, fixations


def test_auc_judd_on_a_large_map_matches_port(large_maps):
    sal, fix = large_maps
    noise = np.random.default_rng(5).random(LARGE)
    assert metrics.auc_judd(sal, fix, seed=5) == pytest.approx(ref.auc_judd(sal, fix, noise), abs=1e-14)
    assert metrics.auc_judd(sal, fix, jitter=False) == pytest.approx(ref.auc_judd(sal, fix), abs=1e-14)


@pytest.mark.parametrize("jitter", [False, True])
def test_auc_judd_on_a_large_8bit_map_counts_every_tie(large_maps, jitter):
    sal, fix = large_maps
    sal = np.round((sal - sal.min()) / np.ptp(sal) * 255)
    noise = np.random.default_rng(0).random(LARGE) if jitter else None
    got = metrics.auc_judd(sal, fix, jitter=jitter, seed=0)
    assert got == pytest.approx(ref.auc_judd(sal, fix, noise), abs=1e-14)


def test_judd_jitter_drawn_in_chunks_is_one_draw():
    flat = np.linspace(0.0, 1.0, 3 * auc._JITTER_CHUNK + 17)
    expected = flat + np.random.default_rng(4).random(flat.size) / metrics.JUDD_JITTER_DIVISOR
    values, low, high, keys = auc._jittered(flat, np.random.default_rng(4))
    np.testing.assert_array_equal(values, expected)
    assert (low, high, keys) == (expected.min(), expected.max(), None)


def test_judd_jitter_keys_are_monotone_and_fit_32_bits():
    # values near the top of the range with the largest jitter: the keys' range bound must hold
    flat = np.concatenate([np.linspace(-3.0, 5.0, 2 * auc._JITTER_CHUNK), np.full(999, 5.0)])
    key_range = auc_thresholds.key_range(flat.min(), flat.max() + 2.0 / metrics.JUDD_JITTER_DIVISOR)
    values, low, high, (keys, used_range) = auc._jittered(flat, np.random.default_rng(1), key_range)
    assert used_range == key_range and (low, high) == (values.min(), values.max())
    np.testing.assert_array_equal(keys, auc_thresholds.keys_of(values, key_range))
    as_float = (values - key_range.low) * key_range.scale
    assert as_float.max() < 2.0**32 and as_float.min() >= 0
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(keys[order].astype(np.int64)) >= 0)
