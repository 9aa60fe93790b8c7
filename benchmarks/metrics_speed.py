"""Milliseconds per map pair for the MIT-benchmark metrics: one by one, and all nine together.

Scores `--num_pairs` seeded synthetic pairs at the ground-truth size (a smooth saliency
map; ~400 centre-biased fixations; their blurred density; the union of ten other pairs'
fixations for shuffled AUC; a centre-bias baseline for information gain) three ways, side by
side in one run: each of the nine functions of `keras_emlnet.metrics` on its own (per-metric
mean/median and their sum), and `metric_suite.score_all` (all nine at once, sharing the
conversions and whole-map sums) in one thread and in two. The three ways take turns going
first on each pair, so none always meets the maps cold. Prints the ratio of `score_all`
on 2 threads to the target (all nine in <= 10 ms per pair on 2 CPU cores; <= 1 meets it),
checks that every `score_all` value equals its function's, and the peak RSS. Map
generation and one warm-up pair (first-use imports and caches) are not timed.

Full run (100 pairs of 480x640):
    python benchmarks/metrics_speed.py
Smoke run (seconds):
    python benchmarks/metrics_speed.py --num_pairs 3 --map_size 96x128
"""

import os
import resource
import statistics
import time

import numpy as np
import scipy.ndimage
from absl import app, flags, logging

from keras_emlnet import cli

flags.DEFINE_integer("num_pairs", 100, "Timed map pairs.")
flags.DEFINE_string("map_size", "480x640", "Ground-truth (fixation/density) size HxW.")
flags.DEFINE_string("saliency_size", None, "Saliency map size HxW; unset: the ground-truth size.")
flags.DEFINE_integer("fixations", 400, "Fixations per synthetic image.")
flags.DEFINE_integer("seed", 0, "Seed of the synthetic maps and of the metrics' random draws.")
flags.DEFINE_float("target_ms", 10.0, "Target milliseconds per pair for all nine metrics together.")
flags.DEFINE_string("out", None, "Optional folder for results.json (with the configuration used).")

FLAGS = flags.FLAGS

METRICS = ("auc_judd", "auc_borji", "auc_shuffled", "nss", "cc", "kld", "sim", "emd", "info_gain")
SUITE_WAYS = ("score_all_1thread", "score_all_2threads")


def _fixation_map(rng, shape, count):
    rows = np.clip(rng.normal(shape[0] / 2, shape[0] / 5, count), 0, shape[0] - 1).astype(int)
    cols = np.clip(rng.normal(shape[1] / 2, shape[1] / 5, count), 0, shape[1] - 1).astype(int)
    fixations = np.zeros(shape)
    fixations[rows, cols] = 1.0
    return fixations


def make_pairs(num_pairs, shape, saliency_shape, fixations, seed):
    """Synthetic (saliency, fixations, density, other, baseline) tuples, seeded."""
    rng = np.random.default_rng(seed)
    sigma = shape[1] / 25  # about one degree of visual angle at 640 px wide
    fixation_maps = [_fixation_map(rng, shape, fixations) for _ in range(num_pairs + 10)]
    others = np.maximum.reduce(fixation_maps[num_pairs:])
    baseline = scipy.ndimage.gaussian_filter(others, 2 * sigma)
    pairs = []
    for fixation_map in fixation_maps[:num_pairs]:
        noise = rng.random(saliency_shape)
        saliency = scipy.ndimage.gaussian_filter(noise, sigma * saliency_shape[1] / shape[1]) ** 4
        density = scipy.ndimage.gaussian_filter(fixation_map, sigma)
        pairs.append((saliency, fixation_map, density / density.sum(), others, baseline))
    return pairs


def _calls(metrics, pair, seed):
    saliency, fixation_map, density, others, baseline = pair
    return {
        "auc_judd": lambda: metrics.auc_judd(saliency, fixation_map, seed=seed),
        "auc_borji": lambda: metrics.auc_borji(saliency, fixation_map, seed=seed),
        "auc_shuffled": lambda: metrics.auc_shuffled(saliency, fixation_map, others, seed=seed),
        "nss": lambda: metrics.nss(saliency, fixation_map),
        "cc": lambda: metrics.cc(saliency, density),
        "kld": lambda: metrics.kld(saliency, density),
        "sim": lambda: metrics.sim(saliency, density),
        "emd": lambda: metrics.emd(saliency, density),
        "info_gain": lambda: metrics.info_gain(saliency, fixation_map, baseline),
    }


def _timed(call):
    start = time.perf_counter()
    result = call()
    return result, 1e3 * (time.perf_counter() - start)


def _same(a, b):
    return a == b or (np.isnan(a) and np.isnan(b))


def measure(pairs, seed):
    """({way: [milliseconds per pair]}, {metric: [scores]}, mismatches) after one warm-up pair.

    Ways: each metric's name (its function alone), "score_all_1thread", "score_all_2threads".
    """
    from keras_emlnet import metrics
    from keras_emlnet.metrics import suite as metric_suite

    for call in _calls(metrics, pairs[0], seed).values():
        call()
    metric_suite.score_all(*pairs[0], seed=seed)
    times = {name: [] for name in METRICS + SUITE_WAYS}
    scores = {name: [] for name in METRICS}
    mismatches = 0
    for index, pair in enumerate(pairs):
        suite_scores = []
        ways = ["separate", *SUITE_WAYS]
        for way in ways[index % 3 :] + ways[: index % 3]:
            if way == "separate":
                for name, call in _calls(metrics, pair, seed).items():
                    score, ms = _timed(call)
                    scores[name].append(score)
                    times[name].append(ms)
            else:
                threads = SUITE_WAYS.index(way) + 1
                result, ms = _timed(lambda: metric_suite.score_all(*pair, seed=seed, threads=threads))
                suite_scores.append(result)
                times[way].append(ms)
        mismatches += sum(not _same(result[name], scores[name][-1]) for result in suite_scores for name in METRICS)
    return times, scores, mismatches


def main(argv):
    del argv
    shape = cli.parse_size(FLAGS.map_size, "map_size")
    saliency_shape = cli.parse_size(FLAGS.saliency_size, "saliency_size") if FLAGS.saliency_size else shape
    pairs = make_pairs(FLAGS.num_pairs, shape, saliency_shape, FLAGS.fixations, FLAGS.seed)
    times, scores, mismatches = measure(pairs, FLAGS.seed)
    rows = {name: {"mean_ms": statistics.fmean(times[name]), "median_ms": statistics.median(times[name]),
                   "mean_score": float(np.nanmean(scores[name]))} for name in METRICS}
    total = sum(row["mean_ms"] for row in rows.values())
    total_median = sum(row["median_ms"] for row in rows.values())
    suite = {way: {"mean_ms": statistics.fmean(times[way]), "median_ms": statistics.median(times[way])}
             for way in SUITE_WAYS}
    together = suite["score_all_2threads"]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{FLAGS.num_pairs} pairs, ground truth {shape[0]}x{shape[1]}, saliency "
          f"{saliency_shape[0]}x{saliency_shape[1]}, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    print(f"{'metric':<20}{'mean ms':>9}{'median ms':>11}{'mean score':>12}")
    for name, row in rows.items():
        print(f"{name:<20}{row['mean_ms']:>9.2f}{row['median_ms']:>11.2f}{row['mean_score']:>12.4f}")
    print(f"{'sum of the nine':<20}{total:>9.2f}{total_median:>11.2f}")
    for way, row in suite.items():
        print(f"{way:<20}{row['mean_ms']:>9.2f}{row['median_ms']:>11.2f}")
    print(f"score_all values equal to the functions': {'yes' if not mismatches else f'NO ({mismatches} differ)'}")
    print(f"speed-up of score_all (2 threads) over the nine calls: "
          f"{total_median / together['median_ms']:.2f}x (medians)")
    print(f"ratio score_all (2 threads) / target ({FLAGS.target_ms:g} ms): "
          f"{together['mean_ms'] / FLAGS.target_ms:.2f} (mean), "
          f"{together['median_ms'] / FLAGS.target_ms:.2f} (median); <= 1 meets the target")
    held_mib = sum({id(a): a.nbytes for pair in pairs for a in pair}.values()) / 2**20
    print(f"peak RSS {peak_mib:.0f} MiB (of which {held_mib:.0f} MiB are the generated maps held for the run)")
    if FLAGS.out:
        from keras_emlnet.atomic_files import write_json_atomic

        config = {flag: FLAGS[flag].value for flag in
                  ("num_pairs", "map_size", "saliency_size", "fixations", "seed", "target_ms")}
        write_json_atomic(os.path.join(FLAGS.out, "results.json"),
                          {"config": config, "metrics": rows, "total_mean_ms": total,
                           "total_median_ms": total_median, "score_all": suite,
                           "score_all_mismatches": mismatches, "peak_rss_mib": peak_mib})
        logging.info("wrote %s", os.path.join(FLAGS.out, "results.json"))


if __name__ == "__main__":
    app.run(main)
