"""keras_emlnet.metrics.suite.score_all: every value equal to its own function's, in one thread and in two."""

import threading

import numpy as np
import pytest
import scipy.ndimage

from keras_emlnet import metrics
from keras_emlnet.metrics import suite

# 240x320 is above MIN_PIXELS_FOR_THREADS: the default uses the worker thread and the 32-bit keys
TRUTH = (240, 320)


def _maps(shape=TRUTH, saliency_shape=None, seed=0, fixations=150):
    rng = np.random.default_rng(seed)
    saliency = scipy.ndimage.gaussian_filter(rng.random(saliency_shape or shape), 6.0) ** 3
    fixation_map = np.zeros(shape)
    fixation_map[rng.integers(0, shape[0], fixations), rng.integers(0, shape[1], fixations)] = 1.0
    density = scipy.ndimage.gaussian_filter(fixation_map, 8.0)
    other = np.zeros(shape)
    other[rng.integers(0, shape[0], 400), rng.integers(0, shape[1], 400)] = 1.0
    baseline = scipy.ndimage.gaussian_filter(other, 20.0) + 1e-4
    return saliency, fixation_map, density, other, baseline


def _one_by_one(saliency, fixation_map, density, other, baseline, *, seed=None, jitter=True, **sampling):
    """The nine functions called on their own, in METRIC_NAMES order."""
    return {
        "auc_judd": metrics.auc_judd(saliency, fixation_map, jitter=jitter, seed=seed),
        "auc_borji": metrics.auc_borji(saliency, fixation_map, seed=seed, **sampling),
        "auc_shuffled": metrics.auc_shuffled(saliency, fixation_map, other, seed=seed, **sampling),
        "nss": metrics.nss(saliency, fixation_map),
        "cc": metrics.cc(saliency, density),
        "kld": metrics.kld(saliency, density),
        "sim": metrics.sim(saliency, density),
        "emd": metrics.emd(saliency, density),
        "info_gain": metrics.info_gain(saliency, fixation_map, baseline),
    }


def _assert_same(got, expected):
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert got[name] == value or (np.isnan(got[name]) and np.isnan(value)), (name, got[name], value)


def _cases():
    saliency, fixation_map, density, other, baseline = _maps()
    eight_bit = np.round(saliency / saliency.max() * 255).astype(np.uint8)
    zero_density = density.copy()
    zero_density[:, :100] = 0.0  # exact zeros: KLD's 0 * log terms
    one_fixation = np.zeros(TRUTH)
    one_fixation[3, 3] = 1.0
    return {
        "same size": (saliency, fixation_map, density, other, baseline),
        "saliency resized": _maps(saliency_shape=(120, 160), seed=1),
        "baseline resized": (saliency, fixation_map, density, other, baseline[::2, ::2]),
        "8-bit saliency, bool fixations": (eight_bit, fixation_map > 0, density, other > 0, baseline),
        "uint8 fixations, zeros in the density": (saliency, fixation_map.astype(np.uint8), zero_density,
                                                  other, baseline),
        "constant saliency": (np.full(TRUTH, 0.5), fixation_map, density, other, baseline),
        "all-zero saliency": (np.zeros(TRUTH), fixation_map, density, other, baseline),
        "no fixations": (saliency, np.zeros(TRUTH), density, other, baseline),
        "one fixation": (saliency, one_fixation, density, other, baseline),
        "small maps (one thread by default)": _maps(shape=(40, 56), seed=2, fixations=30),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_score_all_equals_the_nine_functions(case):
    maps = _cases()[case]
    expected = _one_by_one(*maps, seed=7)
    for threads in (None, 1, 2):
        _assert_same(suite.score_all(*maps, seed=7, threads=threads), expected)


@pytest.mark.parametrize("options", [
    {"jitter": False},
    {"n_splits": None},
    {"n_splits": 17, "step_size": 0.05},
])
def test_score_all_passes_the_sampling_options_on(options):
    maps = _maps(seed=3)
    sampling = {key: value for key, value in options.items() if key != "jitter"}
    expected = _one_by_one(*maps, seed=5, jitter=options.get("jitter", True), **sampling)
    _assert_same(suite.score_all(*maps, seed=5, threads=2, **options), expected)


def test_a_generator_seed_is_drawn_by_judd_borji_then_shuffled_auc():
    saliency, fixation_map, density, other, baseline = _maps(seed=4)
    rng = np.random.default_rng(11)
    expected = {
        "auc_judd": metrics.auc_judd(saliency, fixation_map, seed=rng),
        "auc_borji": metrics.auc_borji(saliency, fixation_map, seed=rng),
        "auc_shuffled": metrics.auc_shuffled(saliency, fixation_map, other, seed=rng),
    }
    for threads in (1, 2):
        got = suite.score_all(saliency, fixation_map, density, other, baseline,
                                     seed=np.random.default_rng(11), threads=threads)
        _assert_same({name: got[name] for name in expected}, expected)


def test_names_choose_and_order_follows_metric_names():
    saliency, fixation_map, density, other, baseline = _maps(seed=5)
    got = suite.score_all(saliency, fixation_map, density, names=["emd", "nss", "auc_judd"])
    assert list(got) == ["emd", "nss", "auc_judd"]
    assert got["nss"] == metrics.nss(saliency, fixation_map)
    assert got["emd"] == metrics.emd(saliency, density)
    # without the optional maps, the metrics that need them are left out
    assert list(suite.score_all(saliency, fixation_map, density)) == [
        name for name in suite.METRIC_NAMES if name not in ("auc_shuffled", "info_gain")
    ]
    # NSS without CC computes its own sum of squares: the same value
    assert suite.score_all(saliency, fixation_map, density, names=["nss"])["nss"] == got["nss"]


@pytest.mark.parametrize("call, message", [
    (lambda m: suite.score_all(m[0], m[1], m[2], names=["auc_shuffled"]), "auc_shuffled needs other_map"),
    (lambda m: suite.score_all(m[0], m[1], m[2], names=["info_gain"]), "info_gain needs baseline_map"),
    (lambda m: suite.score_all(*m, names=["auc"]), "unknown metric names"),
    (lambda m: suite.score_all(*m, threads=3), "threads must be"),
    (lambda m: suite.score_all(*m, n_splits=0), "n_splits"),
    (lambda m: suite.score_all(m[0], m[1], m[2][:-1], m[3], m[4]), "density_map shape"),
    (lambda m: suite.score_all(m[0], m[1], m[2], m[3][:, :-1], m[4]), "other_map shape"),
    (lambda m: suite.score_all(m[0], -m[1], m[2], m[3], m[4]), "fixation_map must be a non-negative"),
    (lambda m: suite.score_all(m[0][None], m[1], m[2], m[3], m[4]), "saliency_map must be a 2-D"),
])
def test_bad_arguments_raise_a_named_error(call, message):
    with pytest.raises(ValueError, match=message):
        call(_maps(seed=6))


@pytest.mark.parametrize("name", ["saliency_map", "density_map", "baseline_map"])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_nan_in_any_map_raises_naming_it(name, threads):
    maps = dict(zip(["saliency_map", "fixation_map", "density_map", "other_map", "baseline_map"], _maps(seed=8)))
    maps[name] = maps[name].copy()
    maps[name][17, 33] = np.nan
    with pytest.raises(ValueError, match=f"{name} contains NaN"):
        suite.score_all(**maps, threads=threads)


def test_the_worker_is_released_after_a_failure_in_the_calling_thread():
    # the worker waits for the calling thread's shared maps: an error there must not leave it blocked
    saliency, fixation_map, density, other, baseline = _maps(seed=9)
    with pytest.raises(ValueError, match="fixation_map must be a non-negative"):
        suite.score_all(saliency, -fixation_map, density, other, baseline, threads=2)
    got = suite.score_all(saliency, fixation_map, density, other, baseline, threads=2, seed=1)
    _assert_same(got, _one_by_one(saliency, fixation_map, density, other, baseline, seed=1))


def test_concurrent_callers_get_their_own_scores():
    # several threads sharing the one worker: each result matches its own pair
    cases = [_maps(seed=seed) for seed in (20, 21, 22)]
    expected = [_one_by_one(*maps, seed=2) for maps in cases]
    results = [None] * len(cases)

    def score(index):
        results[index] = suite.score_all(*cases[index], seed=2, threads=2)

    callers = [threading.Thread(target=score, args=(index,)) for index in range(len(cases))]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    for got, want in zip(results, expected):
        _assert_same(got, want)


def _score_in_child(maps):
    return suite.score_all(*maps, seed=3, threads=2)


def test_a_forked_process_gets_its_own_worker():
    # threads do not survive fork(): a child reusing the parent's executor would wait forever
    import multiprocessing

    maps = _maps(seed=12)
    expected = suite.score_all(*maps, seed=3, threads=2)  # the parent's worker exists now
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_score_in_child, (maps,)).get(timeout=60)
    _assert_same(got, expected)
