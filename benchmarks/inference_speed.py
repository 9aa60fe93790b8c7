"""EMLNet inference speed, float32 beside bfloat16, with peak memory.

For every batch size, one EMLNet (`nasnet` + `densenet161` encoders, random
weights, no download; the decoder; minmax output) is built and timed in
float32 and in mixed bfloat16, each in its own subprocess so that peak memory
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`) belongs to that configuration
alone. BatchNorms get seeded trained-looking statistics (fresh ones fold into
zero biases that Grappler deletes). Every configuration is seeded the same way, so the two precisions run
the same weights on the same images and the table also gives the largest
difference between their minmax maps.

Printed: images/s per precision and their ratio (bfloat16 / float32), the
resident memory after building, and the peak.

Full run (the paper's 480x640, batch 1 and 8; slow on a small CPU):
    python benchmarks/inference_speed.py
Smoke run (seconds, tiny testing encoders):
    python benchmarks/inference_speed.py --backbones tiny --input_size 64x96 \
        --batch_sizes 1,2 --iterations 2
"""

import os
import resource
import tempfile
import time

from absl import app, flags, logging

from keras_emlnet import cli

import batch_norm_statistics
import fresh_process

flags.DEFINE_list("backbones", ["nasnet", "densenet161"], "Encoder backbones (registry names), or 'tiny' "
                  "for two tiny testing encoders.")
flags.DEFINE_string("input_size", "480x640", "Model input size HxW.")
flags.DEFINE_list("batch_sizes", ["1", "8"], "Batch sizes to time.")
flags.DEFINE_list("precisions", ["float32", "bfloat16"], "Precisions to time side by side (float32, bfloat16).")
flags.DEFINE_integer("warmup", 1, "Untimed calls first (graph tracing, allocator warm-up).", lower_bound=0)
flags.DEFINE_integer("iterations", 5, "Timed calls per configuration.", lower_bound=1)
flags.DEFINE_bool("fold_batch_norms", True, "Time the inference copy with BatchNorm folded into convolutions "
                  "(keras_emlnet.inference.folding), as the predictor and the export run it.")
flags.DEFINE_string("out", None, "Optional folder for results.json (with the configuration used).")

FLAGS = flags.FLAGS
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
_SEED = 0


def _current_rss_mb():
    # VmRSS: resident memory now (ru_maxrss is only the peak).
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build_model(backbones, input_size):
    """The EMLNet to time, built under the current global dtype policy."""
    from keras_emlnet.models.emlnet import build_emlnet

    if backbones == ["tiny"]:
        from keras_emlnet.testing import tiny_encoder

        encoders = [tiny_encoder("tiny_a", input_size, seed=0), tiny_encoder("tiny_b", input_size, seed=1)]
    else:
        from keras_emlnet.models.encoder import build_encoder

        encoders = [build_encoder(name, weights=None, input_size=input_size, seed=_SEED) for name in backbones]
    model = build_emlnet(encoders, output_mode="minmax")
    batch_norm_statistics.assign_to_keras(model)  # not fresh ones: they fold into biases Grappler deletes
    return model


def measure(config):
    """Builds and times one configuration in this process; returns a result dict."""
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(_SEED)
    keras.mixed_precision.set_global_policy(_POLICIES[config["precision"]])
    start = time.perf_counter()
    model = build_model(config["backbones"], config["input_size"])
    if config.get("fold_batch_norms", True):
        from keras_emlnet.inference.folding import fold_batch_norms

        model = fold_batch_norms(model)
    build_s = time.perf_counter() - start
    rss_built_mb = _current_rss_mb()

    batch = config["batch_size"]
    images = np.random.default_rng(_SEED).uniform(0, 255, size=(batch, *config["input_size"], 3))
    images = tf.constant(images.astype(np.float32))
    predict = tf.function(lambda x: model(x, training=False))
    for _ in range(config["warmup"]):
        predict(images).numpy()
    times = []
    for _ in range(config["iterations"]):
        start = time.perf_counter()
        maps = predict(images).numpy()  # .numpy() waits for the result
        times.append(time.perf_counter() - start)
    np.save(config["maps_path"], maps[0, :, :, 0])
    median = float(np.median(times))
    return {
        **{key: config[key] for key in ("precision", "batch_size")},
        "images_per_s": batch / median,
        "median_call_s": median,
        "build_s": build_s,
        "rss_after_build_mb": rss_built_mb,
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def format_table(results, precisions):
    """A text table: one row per batch size, precisions side by side."""
    import numpy as np

    lines = []
    header = "batch"
    for precision in precisions:
        header += f" | {precision} img/s | {precision} RSS built/peak MB"
    if len(precisions) == 2:
        header += f" | ratio {precisions[1]}/{precisions[0]} | max abs map diff"
    lines.append(header)
    for batch in sorted({r["batch_size"] for r in results}):
        row = {r["precision"]: r for r in results if r["batch_size"] == batch}
        line = f"{batch:5d}"
        for precision in precisions:
            r = row[precision]
            line += f" | {r['images_per_s']:10.3f} | {r['rss_after_build_mb']:8.0f} / {r['peak_rss_mb']:8.0f}"
        if len(precisions) == 2:
            a, b = (row[p] for p in precisions)
            diff = np.abs(np.load(a["maps_path"]) - np.load(b["maps_path"])).max()
            line += f" | {b['images_per_s'] / a['images_per_s']:6.2f}x | {diff:.4f}"
        lines.append(line)
    return "\n".join(lines)


def main(argv):
    del argv
    if fresh_process.serve_worker(measure):
        return
    precisions = list(FLAGS.precisions)
    unknown = sorted(set(precisions) - set(_POLICIES))
    if unknown:
        raise app.UsageError(f"--precisions must be among {sorted(_POLICIES)}, got {unknown}")
    input_size = cli.parse_size(FLAGS.input_size, "input_size")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (int(b) for b in FLAGS.batch_sizes):
            for precision in precisions:
                config = {
                    "backbones": list(FLAGS.backbones),
                    "input_size": list(input_size),
                    "batch_size": batch,
                    "precision": precision,
                    "warmup": FLAGS.warmup,
                    "iterations": FLAGS.iterations,
                    "maps_path": os.path.join(tmp, f"{precision}_{batch}.npy"),
                    "fold_batch_norms": FLAGS.fold_batch_norms,
                }
                logging.info("measuring %s", config)
                result = fresh_process.run_in_fresh_process(__file__, config)
                result["maps_path"] = config["maps_path"]
                results.append(result)
                logging.info("%s", result)
        from keras_emlnet.inference.precision import choose_precision, describe_hardware

        print(f"EMLNet ({'+'.join(FLAGS.backbones)}) inference at {input_size[0]}x{input_size[1]}, "
              f"median of {FLAGS.iterations} calls after {FLAGS.warmup} warm-up, one process per row cell, "
              f"BatchNorm {'folded' if FLAGS.fold_batch_norms else 'not folded'}; load average "
              f"{os.getloadavg()[0]:.2f}")
        print(f"CPU: {describe_hardware()}; precision auto -> {choose_precision('auto')}")
        table = format_table(results, precisions)
        print(table)
    if FLAGS.out:
        from keras_emlnet.atomic_files import write_json_atomic

        for result in results:
            result.pop("maps_path")
        write_json_atomic(
            os.path.join(FLAGS.out, "results.json"),
            {"config": {name: FLAGS[name].value for name in ("backbones", "input_size", "batch_sizes",
                                                              "precisions", "warmup", "iterations")},
             "results": results, "table": table},
        )


if __name__ == "__main__":
    app.run(main)
