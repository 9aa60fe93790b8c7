"""ROC area against randomly drawn negatives: the AUC-Borji / shuffled-AUC protocol.

MATLAB (AUC_Borji.m, AUC_shuffled.m) draws, per split, `m` negative values from a pool
(all pixels with replacement for Borji; the other images' fixated pixels without replacement
for shuffled AUC), builds thresholds `fliplr(0:step:max([Sth; negatives]))` and integrates
the ROC curve (0,0) -> (fp, tp) at each threshold -> (1,1) with `trapz`.

The thresholds depend on the split through MATLAB's colon operator, whose elements differ
in the last bits with the end point (`0:0.1:0.8` and `0:0.1:1` hold different doubles near
0.6), and maps read from 8-bit images put values exactly on those grid points. To stay exact
we group the pool into "atoms": each value within `_GRID_SLACK_ULPS` ulps of a grid point
k*step is its own atom, and the values strictly between two such windows form one atom. All
values of an atom compare identically with every threshold MATLAB can produce, and give the
same thresholds when they are the split's maximum, so one split is fully described by how many
of its `m` draws fall in each atom. That gives:

- expectation (`expected_auc`): E[AUC] = sum over atoms i of E[AUC ; highest drawn atom = i];
  AUC is linear in fp for fixed thresholds, and E[#draws >= t ; all draws in atoms <= i] has a
  closed form (binomial or hypergeometric), so the expectation over all random splits is exact.
- sampling without replacement (`sampled_auc_without_replacement`): per split, atom counts from
  the multivariate hypergeometric distribution, the law of MATLAB's `randperm` draws.

Sampling with replacement (`split_aucs`) takes the drawn values themselves, as MATLAB does.
"""

import math

import numpy as np
from scipy.special import gammaln

# Values this many ulps (of max(1, largest value)) around a grid point k*step are treated one by
# one; every threshold MATLAB's colon operator produces lies well inside that window.
_GRID_SLACK_ULPS = 64
# Up to this many distinct thresholds over all splits, split_aucs counts by comparison per level.
_MAX_COMPARED_LEVELS = 48
# Smallest threshold step accepted: 1/step thresholds are materialised per split.
MIN_STEP_SIZE = 1e-6


def matlab_colon_from_zero(limits, step):
    """Rows `0:step:limit` exactly as MATLAB's colon operator builds them, for each limit.

    MATLAB counts the intervals with a tolerance of 2*eps*limit, snaps the last element to
    `limit` when within that tolerance, fills the first half as k*step and the second half
    as last - k*step, and sets the middle of an odd-length vector to last/2.

    Args:
        limits: 1-D array of non-negative end points.
        step: positive step.

    Returns:
        (len(limits), n_max + 1) float64 array of ascending thresholds, padded with +inf.
    """
    limits = np.asarray(limits, dtype=np.float64)
    tol = 2.0 * np.finfo(np.float64).eps * limits
    quotient = limits / step
    n = np.floor(quotient)
    n = n + (quotient - n >= 0.5)  # MATLAB's round: halves away from zero
    n = n - (n * step - limits > tol)
    last = n * step
    last = np.where(last - limits > -tol, limits, last)
    k = np.arange(int(n.max()) + 1, dtype=np.float64)[None, :]
    n, last = n[:, None], last[:, None]
    thresholds = np.where(2.0 * k < n, k * step, last - (n - k) * step)
    thresholds = np.where(2.0 * k == n, last / 2.0, thresholds)
    return np.where(k <= n, thresholds, np.inf)


def _atoms(pool, step):
    """Group the ascending pool values into atoms; returns (representative values, counts)."""
    top = max(1.0, float(pool[-1])) + step
    slack = _GRID_SLACK_ULPS * np.finfo(np.float64).eps * top
    grid = np.arange(int(math.floor(top / step)) + 2, dtype=np.float64) * step
    window_lo = np.searchsorted(pool, grid - slack, side="left")
    window_hi = np.searchsorted(pool, grid + slack, side="right")
    # each value's grid cell: the last window starting at or before it; inside that window the
    # value is its own atom, after it (before the next window) it joins the cell's gap atom
    position = np.arange(pool.size)
    cell = np.searchsorted(window_lo, position, side="right") - 1
    inside = position < window_hi[np.maximum(cell, 0)]
    # values before the first window or after the last one belong to no atom (none for pools in [0, 1])
    kept = (cell >= 0) & (inside | (cell < grid.size - 1))
    if not kept.all():
        pool, cell, inside = pool[kept], cell[kept], inside[kept]
    if pool.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    new_atom = np.ones(pool.size, dtype=bool)
    new_atom[1:] = (cell[1:] != cell[:-1]) | (inside[1:] != inside[:-1]) | (inside[1:] & (pool[1:] != pool[:-1]))
    starts = np.flatnonzero(new_atom)
    counts = np.diff(np.append(starts, pool.size)).astype(np.int64)
    # a value strictly between two windows stands for all of them
    values = np.where(inside[starts], pool[starts], grid[cell[starts]] + 0.5 * step)
    return values, counts


def _count_at_least(sorted_values, thresholds):
    return sorted_values.size - np.searchsorted(sorted_values, thresholds, side="left")


def _trapezoid_auc(fp, tp, total):
    """Area under (0,0) -> (fp, tp) by descending threshold -> (total, 1) per row.

    `fp`/`tp` rows are in ascending-threshold order; `total` is 1 for a single curve and the
    event probability when `fp` holds probability-weighted false-positive rates.
    """
    rows = fp.shape[0]
    x = np.concatenate([np.zeros((rows, 1)), fp[:, ::-1], np.broadcast_to(total, (rows, 1))], 1)
    y = np.concatenate([np.zeros((rows, 1)), tp[:, ::-1], np.ones((rows, 1))], 1)
    return np.sum(np.diff(x, axis=1) * (y[:, :-1] + y[:, 1:]), axis=1) / 2.0


class _Protocol:
    """Atoms of one (positives, negative pool, draws) set-up, shared by both modes."""

    def __init__(self, positives, pool, num_draws, step, replace):
        self.num_draws = int(num_draws)
        self.pool_size = int(pool.size)
        self.replace = replace
        self.values, self.counts = _atoms(pool, step)
        self.cumulative = np.cumsum(self.counts)
        positives = np.sort(positives)
        # thresholds when atom i holds the largest draw: MATLAB's max([Sth; negatives])
        limits = np.maximum(positives[-1], self.values)
        self.thresholds = matlab_colon_from_zero(limits, step)
        self.tp = _count_at_least(positives, self.thresholds) / positives.size
        # index of the first atom at or above each threshold
        self.first_atom = np.searchsorted(self.values, self.thresholds, side="left")

    def sampled(self, n_splits, rng):
        # the atom counts of a randperm draw follow the multivariate hypergeometric law
        draws = rng.multivariate_hypergeometric(self.counts, self.num_draws, size=n_splits)
        top_atom = self.counts.size - 1 - np.argmax(draws[:, ::-1] > 0, axis=1)
        at_or_above = np.concatenate(
            [np.cumsum(draws[:, ::-1], axis=1)[:, ::-1], np.zeros((n_splits, 1))], axis=1
        )
        first = self.first_atom[top_atom]
        fp = np.take_along_axis(at_or_above, first, axis=1) / self.num_draws
        aucs = _trapezoid_auc(fp, self.tp[top_atom], 1.0)
        return float(np.mean(aucs))

    def _all_below(self, upto):
        """P(all draws in atoms <= upto), upto an array of cumulative counts."""
        n, m = self.pool_size, self.num_draws
        if self.replace:
            return (upto / n) ** m
        return _hypergeometric_none_outside(upto, n, m)

    def _weighted_count(self, lower, upto):
        """E[#draws in atoms lower..upto ; all draws in atoms <= upto] (counts as arrays)."""
        n, m = self.pool_size, self.num_draws
        inside = np.maximum(upto - lower, 0)
        if self.replace:
            return m * (inside / n) * (upto / n) ** (m - 1)
        # a drawn item inside, the other m - 1 from the remaining upto - 1 items
        return inside * (m / n) * _hypergeometric_none_outside(upto - 1, n - 1, m - 1)

    def expected(self):
        cum = np.concatenate([[0], self.cumulative])
        below_first = cum[self.first_atom]  # draws strictly below each threshold's atom
        upto = self.cumulative[:, None]
        previous = cum[:-1, None]
        weighted = self._weighted_count(below_first, upto) - self._weighted_count(
            below_first, previous
        )
        probability = self._all_below(self.cumulative) - self._all_below(cum[:-1])
        fp = weighted / self.num_draws
        return float(np.sum(_trapezoid_auc(fp, self.tp, probability[:, None])))


def _hypergeometric_none_outside(good, total, draws):
    """C(good, draws) / C(total, draws): probability that `draws` picks avoid the rest."""
    good = np.asarray(good, dtype=np.float64)
    if draws == 0:
        return np.ones_like(good)
    ok = good >= draws
    safe = np.where(ok, good, draws)
    log_ratio = (
        gammaln(safe + 1) - gammaln(safe - draws + 1) - gammaln(total + 1) + gammaln(total - draws + 1)
    )
    return np.where(ok, np.exp(log_ratio), 0.0)


def expected_auc(positives, sorted_pool, num_draws, *, step, replace):
    """Exact expectation over random splits of the AUC against drawn negatives.

    Args:
        positives: 1-D normalised saliency values at the fixations (MATLAB's Sth), non-empty.
        sorted_pool: 1-D normalised values the negatives are drawn from, ascending, non-empty.
        num_draws: negatives per split (m >= 1; at most the pool size when replace is False).
        step: threshold step (MATLAB's stepSize).
        replace: draws with replacement (AUC-Borji's randi) or without (shuffled AUC's randperm).

    Returns:
        E[AUC] as a float.
    """
    return _Protocol(positives, sorted_pool, num_draws, step, replace).expected()


def sampled_auc_without_replacement(positives, sorted_pool, num_draws, *, step, n_splits, rng):
    """Mean AUC over `n_splits` random draws without replacement (shuffled AUC's splits).

    Args as in `expected_auc`, plus `n_splits` and the numpy Generator `rng`.
    """
    return _Protocol(positives, sorted_pool, num_draws, step, replace=False).sampled(n_splits, rng)


def split_aucs(positives, negatives, step):
    """AUC of each random split, exactly as AUC_Borji.m's loop computes it.

    Args:
        positives: 1-D normalised saliency values at the fixations (Sth).
        negatives: (n_splits, m) normalised values drawn for each split.
        step: threshold step.

    Returns:
        (n_splits,) float64 array of AUCs.
    """
    positives = np.sort(positives)
    limits = np.maximum(positives[-1], negatives.max(axis=1))
    thresholds = matlab_colon_from_zero(limits, step)  # each split has its own last bits
    tp = _count_at_least(positives, thresholds) / positives.size
    return _trapezoid_auc(_row_counts_at_least(negatives, thresholds) / negatives.shape[1], tp, 1.0)


def _row_counts_at_least(rows, thresholds):
    """counts[r, k] = #{rows[r] >= thresholds[r, k]}; threshold rows ascending, +inf allowed.

    The splits' thresholds differ only in a few last-bit variants of k * step, so the distinct
    levels are few: each value's number of levels reached (one comparison per level) and a
    per-row histogram of it give every count. Many levels (small steps): per-row binary search.
    """
    levels = np.unique(thresholds[np.isfinite(thresholds)])
    if levels.size > _MAX_COMPARED_LEVELS:
        ordered = np.sort(rows, axis=1)
        return np.array([_count_at_least(row, row_thresholds) for row, row_thresholds in zip(ordered, thresholds)])
    reached = np.zeros(rows.shape, dtype=np.uint8)  # levels <= _MAX_COMPARED_LEVELS < 256
    at_level = np.empty(rows.shape, dtype=bool)
    for level in levels:
        np.greater_equal(rows, level, out=at_level)
        reached += at_level.view(np.uint8)
    num_rows, width = rows.shape[0], levels.size + 2
    bins = reached + (np.arange(num_rows) * width)[:, None]  # one histogram per row
    histogram = np.bincount(bins.ravel(), minlength=num_rows * width).reshape(num_rows, width)
    at_least = np.cumsum(histogram[:, ::-1], axis=1)[:, ::-1]  # column j: values reaching >= j levels
    # threshold levels[i] is reached by the values reaching > i levels; +inf maps to the empty last column
    return np.take_along_axis(at_least, np.searchsorted(levels, thresholds) + 1, axis=1)
