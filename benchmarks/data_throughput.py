"""Data pipeline throughput beside what one encoder training step consumes.

Measured side by side in one process on the same machine:

1. images/s delivered by `keras_emlnet.data.build_dataset(training=True)`
   (decode, geometry, targets, flip; no cache) at the model size;
2. images/s consumed by training steps of an encoder
   (`build_encoder(backbone, weights=None)`, the recipe's SGD + EMLLoss).

The target is ratio = (1) / (2) >= 5. Both run on the same CPUs but not at
the same time: while training, the pipeline competes with the step for them.

Full run (SALICON-size synthetic data, NASNetLarge at 480x640, a few minutes):
    python benchmarks/data_throughput.py
Smoke run (seconds):
    python benchmarks/data_throughput.py --backbone tiny --input_size 64x96 \
        --num_images 16 --image_size 120x160 --train_steps 2
"""

import os
import resource
import statistics
import tempfile
import time

from absl import app, flags, logging

from keras_emlnet import cli

flags.DEFINE_enum("dataset", "salicon", ["salicon", "mit1003", "cat2000"], "Dataset format.")
flags.DEFINE_string("data_dir", None, "A real dataset folder; unset: generate synthetic data.")
flags.DEFINE_integer("num_images", 64, "Synthetic images to generate (train split gets about half).")
flags.DEFINE_string("image_size", None, "Synthetic image size HxW; unset: the dataset's real size.")
flags.DEFINE_string("input_size", "480x640", "Model input size HxW.")
flags.DEFINE_integer("batch_size", 8, "Batch size (the encoder recipe's 8).")
flags.DEFINE_integer("pipeline_epochs", 3, "Epochs through the pipeline; the first is warm-up.")
flags.DEFINE_string("backbone", "nasnet", "Encoder backbone registry name, or 'tiny' (testing backbone).")
flags.DEFINE_integer("train_steps", 3, "Timed training steps (after one warm-up step); 0: pipeline only.")
flags.DEFINE_enum("mixed_precision", "bfloat16", ["none", "bfloat16"], "Training precision; bfloat16 "
                  "is the faster one on this CPU, so the harder target for the pipeline.")
flags.DEFINE_float("target_ratio", 5.0, "Required pipeline/training images-per-second ratio.")
flags.DEFINE_string("out", None, "Optional folder for results.json (with the configuration used).")

FLAGS = flags.FLAGS


def measure_pipeline(dataset, data_dir, input_size, batch_size, epochs):
    """(images/s over the epochs after the first, images per epoch, bad count)."""
    from keras_emlnet.data import build_dataset

    ds = build_dataset(dataset, data_dir, "train", input_size=input_size, batch_size=batch_size,
                       training=True, seed=0)
    rates, count = [], 0
    for epoch in range(epochs):
        start, count = time.perf_counter(), 0
        for images, _ in ds:
            count += int(images.shape[0])
        seconds = time.perf_counter() - start
        logging.info("pipeline epoch %d: %d images in %.2f s", epoch, count, seconds)
        if epoch > 0 or epochs == 1:
            rates.append(count / seconds)
    return statistics.median(rates), count, ds.bad_data_report.count


def measure_training(backbone, input_size, batch_size, steps, mixed_precision):
    """Images/s of encoder training steps on one fixed batch (after a warm-up step)."""
    import numpy as np

    import keras_emlnet
    from keras_emlnet.losses import EMLLoss
    from keras_emlnet.training import fit
    from keras_emlnet.training import runtime
    from keras_emlnet.training.config import TrainConfig

    with runtime.policy_scope(mixed_precision):
        if backbone == "tiny":
            from keras_emlnet.testing import tiny_encoder

            encoder = tiny_encoder(input_size=input_size)
        else:
            encoder = keras_emlnet.build_encoder(backbone, weights=None, input_size=input_size)
        config = TrainConfig(batch_size=batch_size, input_size=input_size, mixed_precision=mixed_precision)
        encoder.compile(optimizer=fit.make_optimizer(config), loss=EMLLoss(), jit_compile=False)
        rng = np.random.default_rng(0)
        images = rng.uniform(0, 255, (batch_size,) + input_size + (3,)).astype(np.float32)
        density = rng.uniform(0, 1, (batch_size,) + input_size).astype(np.float32)
        density /= density.sum(axis=(1, 2), keepdims=True)
        fixations = (rng.uniform(size=(batch_size,) + input_size) > 0.999).astype(np.float32)
        y_true = np.stack([density, fixations], axis=-1)
        start = time.perf_counter()
        encoder.train_on_batch(images, y_true)
        logging.info("training warm-up step (graph build): %.2f s", time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(steps):
            encoder.train_on_batch(images, y_true)
        seconds = time.perf_counter() - start
    logging.info("training: %d steps of %d images in %.2f s", steps, batch_size, seconds)
    return steps * batch_size / seconds, encoder.count_params()


def main(argv):
    del argv
    from keras_emlnet import atomic_files
    from keras_emlnet.data import generate_dataset

    input_size = cli.parse_size(FLAGS.input_size, "input_size")
    mixed_precision = None if FLAGS.mixed_precision == "none" else FLAGS.mixed_precision
    with tempfile.TemporaryDirectory(prefix="data_throughput_") as scratch:
        data_dir = FLAGS.data_dir
        if data_dir is None:
            data_dir = os.path.join(scratch, FLAGS.dataset)
            image_size = cli.parse_size(FLAGS.image_size, "image_size") if FLAGS.image_size else None
            start = time.perf_counter()
            generate_dataset(FLAGS.dataset, data_dir, FLAGS.num_images, seed=0, image_size=image_size)
            logging.info("generated %d images in %.1f s", FLAGS.num_images, time.perf_counter() - start)
        pipeline_rate, epoch_images, bad = measure_pipeline(
            FLAGS.dataset, data_dir, input_size, FLAGS.batch_size, FLAGS.pipeline_epochs
        )
    train_rate, params = float("nan"), None
    if FLAGS.train_steps > 0:
        train_rate, params = measure_training(
            FLAGS.backbone, input_size, FLAGS.batch_size, FLAGS.train_steps, mixed_precision
        )
    ratio = pipeline_rate / train_rate
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results = {
        "dataset": FLAGS.dataset,
        "data_dir": FLAGS.data_dir or "synthetic",
        "image_size": FLAGS.image_size or "real",
        "input_size": list(input_size),
        "batch_size": FLAGS.batch_size,
        "images_per_epoch": epoch_images,
        "bad_samples": bad,
        "backbone": FLAGS.backbone,
        "encoder_params": params,
        "mixed_precision": mixed_precision,
        "cpu_count": os.cpu_count(),
        "pipeline_images_per_s": round(pipeline_rate, 2),
        "training_images_per_s": round(train_rate, 3) if params else None,
        "ratio": round(ratio, 2) if params else None,
        "target_ratio": FLAGS.target_ratio,
        "meets_target": bool(params) and ratio >= FLAGS.target_ratio,
        "peak_rss_mib": round(peak_mib, 1),
    }
    print(f"dataset {FLAGS.dataset} ({results['data_dir']}, images {results['image_size']}) "
          f"at {input_size[0]}x{input_size[1]}, batch {FLAGS.batch_size}, {os.cpu_count()} CPUs")
    print(f"  pipeline (training=True): {pipeline_rate:10.2f} images/s")
    if FLAGS.train_steps > 0:
        print(f"  {FLAGS.backbone} encoder training step ({mixed_precision or 'float32'}): "
              f"{train_rate:10.3f} images/s")
        print(f"  ratio {ratio:.1f}x (target >= {FLAGS.target_ratio:g}x): "
              f"{'MEETS' if results['meets_target'] else 'MISSES'} target")
    else:
        print("  training not measured (--train_steps 0)")
    print(f"  peak RSS {peak_mib:.0f} MiB")
    if FLAGS.out:
        atomic_files.write_json_atomic(os.path.join(FLAGS.out, "results.json"), results)


if __name__ == "__main__":
    app.run(main)
