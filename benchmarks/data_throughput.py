"""Training-pipeline images/s: folder vs TFRecord shards, on 1 core and on 2 pinned cores, side by side.

Each core setting runs in a fresh process pinned with `os.sched_setaffinity`
before TensorFlow loads (TF sizes its thread pools from the CPUs it may
use); there the input paths take turns, epoch by epoch (median of
`--rounds` after a warm-up epoch), measuring what `build_dataset(...,
training=True)` delivers to `fit`: its `epoch_stream` (decode, EXIF,
geometry, targets, flips, batching) at 480x640, batch 8. Three input paths:

- ``numpy_function``: the pipeline before issue 16, reproduced here as the
  baseline: PIL/scipy decoding and .mat parsing per step in
  `tf.numpy_function`, then TF resizing and the Keras RandomFlip;
- ``folder``: `build_dataset` over the dataset folder (in-graph decoding,
  fixations parsed once when listing);
- ``shards``: `build_dataset` over the folder's TFRecord shards.

Targets (issue 16), printed as "target 1" and "target 2": shards >= 3x the
folder pipeline's images/s per core, read against the folder pipeline as it
was before issue 16 (the ``numpy_function`` row: the ``folder`` row is the
in-graph pipeline too now, so shards / folder is printed without a target),
and shards on 2 cores >= 1.7x shards on 1 core. The baseline resizes through
the library's current `geometry.tf_image_to_model` (which skips an identity
resize), so the ratio credits the in-graph decoding only. Also printed: how
many such cores a GPU would need at an assumed consumption
(`--gpu_images_per_s`, see its help).

    python benchmarks/data_throughput.py                      # SALICON-size synthetic data
    python benchmarks/data_throughput.py --num_images 16 --input_size 96x128 --image_size 120x160 --rounds 1  # smoke
"""

import importlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

from benchmarks import fresh_process  # noqa: E402
from keras_emlnet import cli  # noqa: E402

flags.DEFINE_enum("dataset", "salicon", ["salicon", "mit1003", "cat2000"], "Dataset format.")
flags.DEFINE_string("data_dir", None, "A real dataset folder; unset: generate synthetic data.")
flags.DEFINE_integer("num_images", 96, "Synthetic images to generate (the train split gets half).")
flags.DEFINE_string("image_size", None, "Synthetic image size HxW; unset: the dataset's real size.")
flags.DEFINE_string("input_size", "480x640", "Model input size HxW.")
flags.DEFINE_integer("batch_size", 8, "Batch size (the encoder recipe's 8).")
flags.DEFINE_integer("rounds", 3, "Timed turns of two epochs per path (after a warm-up round), paths taking turns.")
flags.DEFINE_integer("num_shards", 4, "Shards to convert the train split into.")
flags.DEFINE_list("paths", ["numpy_function", "folder", "shards"], "Input paths to measure.")
flags.DEFINE_float("gpu_images_per_s", 100.0,
                   "Assumed images/s one GPU consumes training NASNetLarge at 480x640, batch 8: the README's "
                   "V100 estimate (100,000 images in ~1.5 h = ~19 images/s) times ~5 for an H100 in bfloat16. "
                   "Not measured (no GPU on this machine).")
flags.DEFINE_string("out", None, "Optional folder for results.json (with the configuration used).")

FLAGS = flags.FLAGS
SHARDS_TARGET = 3.0
SCALING_TARGET = 1.7


def numpy_function_dataset(dataset, data_dir, input_size, batch_size, seed):
    """The pipeline as it was before issue 16 (the baseline): NumPy decoding in tf.numpy_function."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_emlnet.data import pipeline
    from keras_emlnet.models import geometry

    reader = pipeline.get_reader(dataset)
    samples = reader.list_samples(data_dir, "train")

    def load(index):
        image, density, rows, cols = pipeline.load_sample(reader, samples[int(index)])
        geom = geometry.make_geometry(image.shape[:2], input_size, reader.MODE)
        return image, density[..., None].astype(np.float32), geom.fixations_to_model(rows, cols).astype(np.float32)

    def tf_load(index):
        image, density, fixations = tf.numpy_function(load, [index], [tf.uint8, tf.float32, tf.float32],
                                                      stateful=False)
        image.set_shape([None, None, 3])
        density.set_shape([None, None, 1])
        fixations.set_shape(input_size)
        image = geometry.tf_image_to_model(image, input_size, reader.MODE)
        density = geometry.tf_image_to_model(density, input_size, reader.MODE, antialias=False)[..., 0]
        density = tf.math.divide_no_nan(density, tf.reduce_sum(density))
        return image, tf.stack([density, fixations], axis=-1)

    flip = keras.layers.RandomFlip("horizontal", seed=seed)

    def flip_batch(images, y_true):
        flipped = flip({"images": images, "segmentation_masks": y_true}, training=True)
        return flipped["images"], flipped["segmentation_masks"]

    ds = tf.data.Dataset.range(len(samples)).shuffle(len(samples), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(tf_load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    return ds.map(flip_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE), len(samples)


def measure(config):
    """One core setting, in a fresh process: pin the cores, then time the paths' epochs taking turns.

    Each turn times two epochs of a fresh iterator (after its first batch);
    a warm-up round, then `rounds` timed ones, the paths in turn within each
    round, so a change in the machine's load hits them alike.
    """
    os.sched_setaffinity(0, config["cores"])  # before TensorFlow sizes its thread pools
    importlib.import_module("tensorflow")  # loaded before the builds are timed

    from keras_emlnet.data import build_dataset

    input_size = tuple(config["input_size"])
    streams, built = {}, {}
    for path in config["paths"]:
        start = time.perf_counter()
        if path == "numpy_function":
            ds, count = numpy_function_dataset(config["dataset"], config["data_dir"], input_size,
                                               config["batch_size"], seed=0)
            per_epoch = -(-count // config["batch_size"])
            streams[path] = lambda round_index, ds=ds: ds.repeat()
        else:
            root = config["shards_dir"] if path == "shards" else config["data_dir"]
            train = build_dataset(config["dataset"], root, "train", input_size=input_size,
                                  batch_size=config["batch_size"], training=True, seed=0)
            count, per_epoch = train.num_examples, train.batches_per_epoch
            streams[path] = lambda round_index, train=train: train.epoch_stream(round_index * 2 * train.batches_per_epoch)
        built[path] = {"build_seconds": time.perf_counter() - start, "images_per_epoch": count,
                       "batches_per_epoch": per_epoch, "rates": []}
    for round_index in range(config["rounds"] + 1):
        for path in config["paths"]:
            # A fresh iterator per turn, deleted after it: no path prefetches while another is timed.
            iterator = iter(streams[path](round_index))
            next(iterator)  # the pipeline starts (threads, autotuning) before the clock does
            start, images = time.perf_counter(), 0
            for _ in range(2 * built[path]["batches_per_epoch"]):
                images += int(next(iterator)[0].shape[0])
            seconds = time.perf_counter() - start
            del iterator
            if round_index:  # round 0 warms up
                built[path]["rates"].append(images / seconds)
    for path in built:
        built[path]["images_per_s"] = statistics.median(built[path]["rates"])
    return {"paths": built, "threads": len(os.sched_getaffinity(0)),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv):
    del argv
    if fresh_process.serve_worker(measure):
        return
    from keras_emlnet import atomic_files
    from keras_emlnet.data import generate_dataset, tfrecords

    input_size = cli.parse_size(FLAGS.input_size, "input_size")
    available = sorted(os.sched_getaffinity(0))
    core_sets = [available[:1], available[:2]] if len(available) >= 2 else [available[:1]]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="data_throughput_") as scratch:
        data_dir = FLAGS.data_dir
        if data_dir is None:
            data_dir = os.path.join(scratch, FLAGS.dataset)
            image_size = cli.parse_size(FLAGS.image_size, "image_size") if FLAGS.image_size else None
            generate_dataset(FLAGS.dataset, data_dir, FLAGS.num_images, seed=0, image_size=image_size)
        shards_dir = os.path.join(scratch, "shards")
        start = time.perf_counter()
        converted = tfrecords.convert(FLAGS.dataset, data_dir, "train", shards_dir, FLAGS.num_shards)
        convert_seconds = time.perf_counter() - start
        cells = {}
        for cores in core_sets:
            config = {"paths": FLAGS.paths, "cores": cores, "dataset": FLAGS.dataset, "data_dir": data_dir,
                      "shards_dir": shards_dir, "input_size": list(input_size), "batch_size": FLAGS.batch_size,
                      "rounds": FLAGS.rounds}
            logging.info("measuring %s on %d core(s)", FLAGS.paths, len(cores))
            result = fresh_process.run_in_fresh_process(__file__, config)
            for path, cell in result["paths"].items():
                cells[(path, len(cores))] = {**cell, "peak_rss_mib": result["peak_rss_mib"]}
    load_after = os.getloadavg()

    gpu = FLAGS.gpu_images_per_s
    print(f"{FLAGS.dataset} train split ({converted.examples} images, {FLAGS.data_dir or 'synthetic'}, "
          f"{FLAGS.image_size or 'real size'}) at {input_size[0]}x{input_size[1]}, batch {FLAGS.batch_size}; "
          f"conversion to {FLAGS.num_shards} shards: {converted.examples / convert_seconds:.1f} images/s")
    print(f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
          f"(the machine's other jobs share these cores: compare within this run only)")
    widths = "  {:<15}" + "{:>14}" * len(core_sets) + "{:>12}{:>14}{:>16}"
    print(widths.format("path", *[f"{len(c)} core(s)" for c in core_sets], "2c / 1c", "build (s)",
                        f"cores for {gpu:g}/s"))
    for path in FLAGS.paths:
        rates = [cells[(path, len(c))]["images_per_s"] for c in core_sets]
        scaling = rates[-1] / rates[0] if len(rates) > 1 else float("nan")
        print(widths.format(path, *[f"{r:.2f}" for r in rates], f"{scaling:.2f}x",
                            f"{cells[(path, 1)]['build_seconds']:.1f}", f"{gpu / rates[0]:.1f}"))
    results = {"cells": {f"{p}/{n}": v for (p, n), v in cells.items()}, "gpu_images_per_s_assumed": gpu,
               "load_average_before": load_before, "load_average_after": load_after,
               "convert_images_per_s": converted.examples / convert_seconds,
               "config": {k: FLAGS[k].value for k in ("dataset", "data_dir", "num_images", "image_size",
                                                       "input_size", "batch_size", "rounds", "num_shards")}}
    if "shards" in FLAGS.paths:
        if "numpy_function" in FLAGS.paths:
            ratio = cells[("shards", 1)]["images_per_s"] / cells[("numpy_function", 1)]["images_per_s"]
            results["shards_vs_numpy_function_per_core"] = ratio
            print(f"  target 1: shards (in-graph) / the pre-issue-16 folder pipeline (numpy_function row), "
                  f"images/s on 1 core: {ratio:.2f}x (>= {SHARDS_TARGET:g}x: "
                  f"{'MEETS' if ratio >= SHARDS_TARGET else 'MISSES'})")
        if "folder" in FLAGS.paths:
            ratio = cells[("shards", 1)]["images_per_s"] / cells[("folder", 1)]["images_per_s"]
            results["shards_vs_folder_per_core"] = ratio
            print(f"  (no target) shards / folder, both decoded in-graph now, 1 core: {ratio:.2f}x")
        if len(core_sets) > 1:
            scaling = cells[("shards", 2)]["images_per_s"] / cells[("shards", 1)]["images_per_s"]
            results["shards_2_cores_vs_1"] = scaling
            print(f"  target 2: shards images/s on 2 pinned cores / on 1 core: {scaling:.2f}x "
                  f"(>= {SCALING_TARGET:g}x: {'MEETS' if scaling >= SCALING_TARGET else 'MISSES'})")
    print(f"  peak RSS per cell: {max(c['peak_rss_mib'] for c in cells.values()):.0f} MiB at most")
    if FLAGS.out:
        atomic_files.write_json_atomic(os.path.join(FLAGS.out, "results.json"), results)
    print(json.dumps({k: v for k, v in results.items() if k.startswith("shards")}))


if __name__ == "__main__":
    app.run(main)
