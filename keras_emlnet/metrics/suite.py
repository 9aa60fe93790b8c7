"""All MIT-benchmark metrics of one prediction at once, sharing the work they have in common.

Scoring a prediction with the nine functions of `keras_emlnet.metrics` one by one repeats
work: the saliency map is converted (and resized, when its size differs from the ground
truth's) nine times, the fixation map is searched five times, and the same sums, minima and
maxima are taken again by every metric. `score_all` does each of those once
(`_checks.CheckedMap`), scores KLD, CC and SIM in one pass over the two maps, lets NSS
reuse CC's sum of squares, and runs the metrics in two threads (NumPy's loops, the sort, the
random draws and POT's solver release the GIL). Every score is exactly the value its own
function returns for the same arguments.
"""

import collections
import concurrent.futures
import functools
import math
import os
from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike

from keras_emlnet.metrics import _checks as inputs
from keras_emlnet.metrics import auc, density, earth_mover, fixation

METRIC_NAMES = ("auc_judd", "auc_borji", "auc_shuffled", "nss", "cc", "kld", "sim", "emd", "info_gain")
# The metrics that need an optional input, and its argument name.
_NEEDS = {"auc_shuffled": "other_map", "info_gain": "baseline_map"}
# Metrics scored by whichever thread is free first (see `_Scoring`); the fixed shares are
# about equal on 480x640 maps, and these two even out what the machine's load unbalances.
_FLOATING = ("auc_shuffled", "info_gain")
_PAIR_METRICS = ("kld", "cc", "sim")  # `density.pair_metrics_of`
# Below this many ground-truth pixels a second thread costs more than it saves (measured:
# 96x128 maps take as long on two threads as on one; 480x640 maps 1.5x less).
MIN_PIXELS_FOR_THREADS = 65_536


def _worker():
    """The one worker thread of this process (a forked child gets its own: threads do not fork)."""
    return _worker_of_process(os.getpid())


@functools.lru_cache(maxsize=1)
def _worker_of_process(pid):
    del pid  # the cache key
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="metric_suite")


def _requested(names, other_map, baseline_map):
    if names is None:
        given = {"other_map": other_map is not None, "baseline_map": baseline_map is not None}
        return tuple(name for name in METRIC_NAMES if given.get(_NEEDS.get(name), True))
    names = tuple(names)
    unknown = [name for name in names if name not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown metric names {unknown}; choose from {METRIC_NAMES}")
    for name in names:
        needed = _NEEDS.get(name)
        if needed and {"other_map": other_map, "baseline_map": baseline_map}[needed] is None:
            raise ValueError(f"{name} needs {needed}")
    return names


def score_all(
    saliency_map: ArrayLike,
    fixation_map: ArrayLike,
    density_map: ArrayLike | None,
    other_map: ArrayLike | None = None,
    baseline_map: ArrayLike | None = None,
    *,
    names: Iterable[str] | None = None,
    jitter: bool = True,
    n_splits: int | None = auc.DEFAULT_N_SPLITS,
    step_size: float = auc.DEFAULT_STEP_SIZE,
    seed: int | np.random.Generator | None = None,
    threads: int | None = None,
) -> dict[str, float]:
    """The MIT-benchmark metrics of one saliency map against one image's ground truth.

    Each value equals what the function of the same name in `keras_emlnet.metrics` returns
    for these arguments (AUC-Judd gets `jitter` and `seed`; AUC-Borji and shuffled AUC get
    `n_splits`, `step_size` and `seed`).

    Args:
        saliency_map: 2-D prediction, any size (resized once to the ground truth's size; EMD
            resizes the map as given, as `metrics.emd` does).
        fixation_map: 2-D binary fixation map, fixated pixels > 0.
        density_map: 2-D fixation density of the fixation map's shape.
        other_map: 2-D union of other images' fixations (shuffled AUC), or None.
        baseline_map: 2-D baseline prediction (information gain), or None.
        names: metric names to compute; None: all of METRIC_NAMES whose inputs are given.
        jitter, n_splits, step_size, seed: as in `metrics.auc_judd` / `auc_borji` /
            `auc_shuffled` (an int or None seeds each metric's own stream; a Generator is drawn
            from by AUC-Judd, AUC-Borji and shuffled AUC in that order).
        threads: 1 scores in the calling thread; 2 also uses one worker thread; None: 2 for
            ground truths of at least MIN_PIXELS_FOR_THREADS pixels on a machine with more
            than one CPU, else 1.

    Returns:
        {name: float} in METRIC_NAMES order.

    Raises:
        ValueError: an unknown name, a missing input for a requested metric, bad sampling
            arguments, a ground-truth map of another shape, or an invalid map (named).
    """
    if threads not in (None, 1, 2):
        raise ValueError(f"threads must be None, 1 or 2, got {threads!r}")
    names = _requested(names, other_map, baseline_map)
    auc.check_sampling(n_splits, step_size)
    # cheap checks first (dtype, dimensionality, shapes); values are checked as they are used
    shape = inputs.checked_array(fixation_map, "fixation_map").shape
    if threads is None:
        threads = 2 if math.prod(shape) >= MIN_PIXELS_FOR_THREADS and (os.cpu_count() or 1) > 1 else 1
    checked_density = inputs.CheckedMap(density_map, "density_map")
    _require_shape(checked_density.array, shape, "density_map")
    if "auc_shuffled" in names:
        _require_shape(inputs.checked_array(other_map, "other_map"), shape, "other_map")
    sampling = {"n_splits": n_splits, "step_size": step_size, "seed": seed}
    scoring = _Scoring(names, inputs.float_map(saliency_map, "saliency_map"), checked_density, other_map,
                       baseline_map, jitter, sampling)
    future = _worker().submit(scoring.second_share) if threads == 2 else None
    scores = scoring.first_share(fixation_map, shape)
    if future is None:
        scores.update(scoring.second_share())
    else:
        scores.update(future.result())
    return {name: scores[name] for name in names}


class _Scoring:
    """One pair's inputs and the two shares of its metrics (see `score_all`).

    The first share (calling thread) finds the fixations, resizes and reduces the saliency map
    and reduces the density, publishes them through `ready`, then scores AUC-Judd and
    AUC-Borji. The second share scores EMD meanwhile (it needs neither), then KLD, CC and SIM
    in one pass, and NSS. Shuffled AUC and IG float: whichever share is free first takes the
    next of them.
    """

    def __init__(self, names, original, density, other_map, baseline_map, jitter, sampling):
        self.names, self.original, self.density = names, original, density
        self.other_map, self.baseline_map = other_map, baseline_map
        self.jitter, self.sampling = jitter, sampling
        self.ready = concurrent.futures.Future()  # (saliency CheckedMap, fixated flat indices)
        # with a Generator as seed, shuffled AUC draws after AUC-Borji, in the first share
        self.shuffled_first = "auc_shuffled" in names and isinstance(sampling["seed"], np.random.Generator)
        self.floating = collections.deque(
            name for name in _FLOATING if name in names and not (name == "auc_shuffled" and self.shuffled_first)
        )

    def first_share(self, fixation_map, shape):
        try:
            fixated = inputs.fixation_points(fixation_map, "fixation_map")[1]
            saliency = inputs.CheckedMap(self.original, "saliency_map", shape)
            # sums and extremes, computed before the second share reads them (the density's
            # here too: it evens the shares out, the second one scoring EMD meanwhile)
            saliency.prepare()
            self.density.prepare()
        except BaseException as error:
            self.ready.set_exception(error)  # the second share stops waiting
            raise
        self.ready.set_result((saliency, fixated))
        scores = {}
        if "auc_judd" in self.names:
            scores["auc_judd"] = auc.auc_judd_of(saliency, fixated, jitter=self.jitter, seed=self.sampling["seed"])
        if "auc_borji" in self.names:
            scores["auc_borji"] = auc.auc_borji_of(saliency, fixated, **self.sampling)
        if self.shuffled_first:
            scores["auc_shuffled"] = self._score("auc_shuffled")
        return self._score_floating(scores)

    def second_share(self):
        scores = {}
        if "emd" in self.names:
            scores["emd"] = earth_mover.emd(self.original, self.density.array)
        saliency, fixated = self.ready.result()
        # one pass over both maps for KLD, CC and SIM; NSS reuses CC's sum of squares
        pair_names = [name for name in self.names if name in _PAIR_METRICS]
        pair_scores, squares = density.pair_metrics_of(saliency, self.density, pair_names)
        scores.update(pair_scores)
        if "nss" in self.names:
            scores["nss"] = fixation.nss_of(saliency, fixated, squares)
        return self._score_floating(scores)

    def _score_floating(self, scores):
        while True:
            try:
                name = self.floating.popleft()  # atomic: each floating metric is scored once
            except IndexError:
                return scores
            scores[name] = self._score(name)

    def _score(self, name):
        saliency, fixated = self.ready.result()
        if name == "auc_shuffled":
            others = inputs.fixation_points(self.other_map, "other_map")[1]
            return auc.auc_shuffled_of(saliency, fixated, others, **self.sampling)
        baseline = inputs.CheckedMap(self.baseline_map, "baseline_map", saliency.array.shape)
        return fixation.info_gain_of(saliency, baseline, fixated)


def _require_shape(array, shape, name):
    if array.shape != shape:
        raise ValueError(f"{name} shape {array.shape} differs from fixation_map shape {shape}")
