"""Borji / shuffled AUC protocol: MATLAB's colon thresholds, exact expectation, sampling law.

The reference is a literal port of one MATLAB split (tests/metrics/matlab_reference.py) and a
brute-force enumeration of every equally likely draw, which gives the expectation exactly.
"""

import itertools

import numpy as np
import pytest

from keras_emlnet.metrics import auc_sampling
from keras_emlnet.metrics.auc_sampling import (
    expected_auc,
    matlab_colon_from_zero,
    sampled_auc_without_replacement,
    split_aucs,
)
from tests.metrics.matlab_reference import colon as colon_reference
from tests.metrics.matlab_reference import split_auc as split_auc_reference

STEP = 0.1


def test_colon_matches_the_two_ended_construction():
    one = matlab_colon_from_zero([1.0], STEP)[0]
    # first half k*0.1, second half 1 - k*0.1, middle (n = 10 even) last/2
    expected = [0, 0.1, 0.2, 3 * 0.1, 4 * 0.1, 0.5, 1 - 4 * 0.1, 1 - 3 * 0.1, 1 - 2 * 0.1, 1 - 0.1, 1.0]
    np.testing.assert_array_equal(one, expected)
    assert one[3] != 0.3 and one[6] == 0.6  # the famous MATLAB 0:0.1:1 quirk, both ways
    # with limit 0.8 the element near 0.6 is built from the other end and differs in the last bit
    eight = matlab_colon_from_zero([0.8], STEP)[0]
    assert eight[6] == 0.8 - 2 * 0.1 and eight[6] != one[6]


@pytest.mark.parametrize("limit", [0.0, 0.05, 0.1, 0.3, 0.6, 0.6 + 1e-16, 0.87, 0.95, 0.9999999999999999, 1.0])
def test_colon_rows_match_reference(limit):
    row = matlab_colon_from_zero([limit, 1.0], STEP)[0]
    np.testing.assert_array_equal(row[np.isfinite(row)], colon_reference(limit, STEP))
    assert np.all(np.isinf(row[len(colon_reference(limit, STEP)) :]))


def _pool_and_positives():
    # values on the 0.1 grid, as 8-bit maps give them, so MATLAB's last-bit thresholds matter
    pool = np.array([0.0, 0.2, 0.6, 0.6, 1.0, 102 / 255, 0.35])
    positives = np.array([0.6, 0.35, 0.2])
    return pool, positives


def test_expectation_with_replacement_equals_enumeration():
    pool, positives = _pool_and_positives()
    m = positives.size
    draws = itertools.product(range(pool.size), repeat=m)  # 7^3 equally likely splits
    exact = np.mean([split_auc_reference(positives, pool[list(d)], STEP) for d in draws])
    got = expected_auc(positives, np.sort(pool), m, step=STEP, replace=True)
    assert got == pytest.approx(exact, abs=1e-12)


def test_expectation_without_replacement_equals_enumeration():
    pool, positives = _pool_and_positives()
    m = 2  # MATLAB takes the first m of randperm: every m-subset equally likely
    subsets = itertools.combinations(range(pool.size), m)
    exact = np.mean([split_auc_reference(positives, pool[list(s)], STEP) for s in subsets])
    got = expected_auc(positives, np.sort(pool), m, step=STEP, replace=False)
    assert got == pytest.approx(exact, abs=1e-12)


@pytest.mark.parametrize(
    "negatives, expected",
    [
        # max 1.0: the threshold near 0.6 is 1 - 4*0.1 == 0.6, so the negative at 0.6 is counted
        # there, together with 1.0, before any positive: (0,0) (.5,0) (1,0) (1,1) -> area 0
        ([0.6, 1.0], 0.0),
        # max 0.8: that threshold is 0.8 - 2*0.1 == 0.6000000000000001 > 0.6, so 0.6 joins the
        # positives at threshold 0.5: (0,0) (.5,0) (1,1) -> area 0.25
        ([0.6, 0.8], 0.25),
    ],
)
def test_last_bit_of_the_threshold_decides_ties(negatives, expected):
    positives = np.array([0.55, 0.55])
    negatives = np.array(negatives)
    assert split_auc_reference(positives, negatives, STEP) == pytest.approx(expected, abs=1e-15)
    assert expected_auc(positives, negatives, 2, step=STEP, replace=False) == pytest.approx(expected, abs=1e-15)
    assert split_aucs(positives, negatives[None, :], STEP)[0] == pytest.approx(expected, abs=1e-15)


def test_split_aucs_equal_the_port_split_by_split():
    rng = np.random.default_rng(2)
    pool = np.round(rng.random(200) * 20) / 20  # ties, some exactly on the grid
    positives = np.round(rng.random(15) * 20) / 20
    negatives = pool[rng.integers(0, pool.size, (300, positives.size))]
    expected = [split_auc_reference(positives, row, STEP) for row in negatives]
    np.testing.assert_allclose(split_aucs(positives, negatives, STEP), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("replace", [True, False])
def test_expectation_matches_mean_of_port_splits(replace):
    rng = np.random.default_rng(3)
    pool = np.sort(np.round(rng.random(300) ** 2 * 40) / 40)  # many ties, some on the grid
    positives = np.round(rng.random(25) * 40) / 40
    m = positives.size
    expected = expected_auc(positives, pool, m, step=STEP, replace=replace)
    draws = 3000
    port = []
    for _ in range(draws):
        picks = rng.integers(0, pool.size, m) if replace else rng.permutation(pool.size)[:m]
        port.append(split_auc_reference(positives, pool[picks], STEP))
    port = np.array(port)
    standard_error = port.std(ddof=1) / np.sqrt(draws)
    assert abs(port.mean() - expected) < 4 * standard_error
    if not replace:
        sampled = sampled_auc_without_replacement(
            positives, pool, m, step=STEP, n_splits=draws, rng=np.random.default_rng(0)
        )
        assert abs(sampled - expected) < 4 * standard_error


def test_sampling_is_reproducible_with_a_seed():
    pool, positives = _pool_and_positives()
    runs = [
        sampled_auc_without_replacement(positives, np.sort(pool), 3, step=STEP, n_splits=10, rng=np.random.default_rng(7))
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("step", [0.1, 0.01])  # 11 levels (compared one by one) / 101 (binary search)
def test_split_aucs_equal_the_port_for_both_counting_paths(step):
    rng = np.random.default_rng(5)
    pool = np.round(rng.random(300) * 100) / 100  # ties on the 0.01 grid
    positives = np.round(rng.random(12) * 100) / 100
    negatives = pool[rng.integers(0, pool.size, (40, positives.size))]
    expected = [split_auc_reference(positives, row, step) for row in negatives]
    np.testing.assert_allclose(split_aucs(positives, negatives, step), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("step", [0.1, 0.005])
def test_row_counts_equal_counting_each_row(step):
    rng = np.random.default_rng(6)
    rows = np.round(rng.random((30, 50)) * 40) / 40
    thresholds = matlab_colon_from_zero(rows.max(axis=1) * rng.random(30), step)  # rows of unequal length
    expected = [[np.count_nonzero(row >= t) for t in levels] for row, levels in zip(rows, thresholds)]
    np.testing.assert_array_equal(auc_sampling._row_counts_at_least(rows, thresholds), expected)


def _atoms_reference(pool, step):
    """The atoms by a plain loop over grid points: np.unique inside each window, one atom per gap."""
    top = max(1.0, float(pool[-1])) + step
    slack = auc_sampling._GRID_SLACK_ULPS * np.finfo(np.float64).eps * top
    grid = np.arange(int(np.floor(top / step)) + 2) * step
    values, counts = [], []
    for k, point in enumerate(grid):
        window = pool[(pool >= point - slack) & (pool <= point + slack)]
        near, near_counts = np.unique(window, return_counts=True)
        values += near.tolist()
        counts += near_counts.tolist()
        if k + 1 < grid.size:
            between = np.count_nonzero((pool > point + slack) & (pool < grid[k + 1] - slack))
            if between:
                values.append(point + 0.5 * step)
                counts.append(between)
    return np.array(values), np.array(counts)


@pytest.mark.parametrize(
    "pool",
    [
        np.round(np.random.default_rng(7).random(500) * 255) / 255,  # 8-bit values, some on the grid
        np.random.default_rng(8).random(400),  # continuous: gaps only, nearly
        np.array([0.0, 0.0, 0.1, 0.30000000000000004, 0.3, 0.35, 0.7, 1.0, 1.0]),  # last-bit neighbours
        np.array([0.05, 0.05]),
    ],
)
def test_atoms_match_a_loop_over_grid_points(pool):
    pool = np.sort(pool)
    values, counts = auc_sampling._atoms(pool, STEP)
    ref_values, ref_counts = _atoms_reference(pool, STEP)
    np.testing.assert_array_equal(values, ref_values)
    np.testing.assert_array_equal(counts, ref_counts)
    assert counts.sum() == pool.size
