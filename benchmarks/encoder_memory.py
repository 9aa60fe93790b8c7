"""Why EML-NET trains its encoders one at a time: memory and time of one step.

Measured side by side, each configuration in its own subprocess:
- `encoder`: one training step of one encoder (`--encoder`, default nasnet),
  i.e. the paper's first stage;
- `joint`: one training step that trains every backbone of `--joint`
  (default nasnet + densenet161) and the decoder together, end to end — the
  alternative the paper avoids;
each in every precision of `--precisions` (float32, bfloat16), with random
weights (no download), the EML loss and the recipe's SGD.

Memory: on CPU the peak resident memory *during training* (VmHWM, reset after
the model is built by writing 5 to /proc/self/clear_refs, so building does not
count; falls back to ru_maxrss where that is refused) and the increase over
the memory after building; on GPU also TensorFlow's peak device memory.
Printed: a table and the joint/encoder and bfloat16/float32 ratios.

Full run (the paper's setting; needs a big machine):
    python benchmarks/encoder_memory.py
Smoke run here (minutes on 2 CPU cores):
    python benchmarks/encoder_memory.py --input_size 96x128 --steps 2
Seconds, tiny testing backbones:
    python benchmarks/encoder_memory.py --encoder tiny --joint tiny,tiny --input_size 64x96
"""

import os
import resource
import statistics
import time

from absl import app, flags, logging

from keras_emlnet import cli

import fresh_process

flags.DEFINE_string("encoder", "nasnet", "Backbone of the separately trained encoder ('tiny': test backbone).")
flags.DEFINE_list("joint", ["nasnet", "densenet161"], "Backbones trained together with the decoder.")
flags.DEFINE_string("input_size", "480x640", "Model input size HxW.")
flags.DEFINE_integer("batch_size", 2, "Batch size of the step.", lower_bound=1)
flags.DEFINE_list("precisions", ["float32", "bfloat16"], "Precisions: float32, bfloat16, float16.")
flags.DEFINE_integer("steps", 3, "Timed training steps after one untimed (tracing) step.", lower_bound=1)
flags.DEFINE_string("out", None, "Optional folder for results.json (with the configuration used).")

FLAGS = flags.FLAGS


def _status_kb(field):
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _reset_peak_rss():
    """Makes VmHWM (peak RSS) restart from the current RSS; False if refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _backbone(name, seed):
    from keras_emlnet import testing

    return testing.tiny_backbone_spec("tiny", seed=seed) if name == "tiny" else name


def _build(kind, backbones, input_size):
    import keras

    from keras_emlnet.models import taps
    from keras_emlnet.models.decoder import build_decoder
    from keras_emlnet.models.encoder import build_encoder

    shape = (*input_size, 3)
    if kind == "encoder":
        return build_encoder(_backbone(backbones[0], 0), input_size=input_size, seed=0)
    image = keras.Input(shape=shape, name="image")
    features = {}
    for index, name in enumerate(backbones):
        encoder = build_encoder(_backbone(name, index), input_size=input_size, prefix=f"{name}{index}", seed=index)
        tapped = {layer_name: layer.output for layer_name, layer in taps.find_tap_layers(encoder).items()}
        features.update(keras.Model(encoder.input, tapped, name=f"{name}{index}_taps")(image))
    feature_shapes = {tap: tuple(tensor.shape[1:]) for tap, tensor in features.items()}
    output = build_decoder(feature_shapes, input_size)(features)
    return keras.Model(image, output, name="joint")


def _measure(config):
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_emlnet.losses import EMLLoss
    from keras_emlnet.training import runtime
    from keras_emlnet.training.optimizers import TorchSGD

    input_size, batch = tuple(config["input_size"]), config["batch_size"]
    keras.utils.set_random_seed(0)
    precision = None if config["precision"] == "float32" else config["precision"]
    with runtime.policy_scope(precision):
        model = _build(config["kind"], config["backbones"], input_size)
        model.compile(optimizer=TorchSGD(0.01, momentum=0.9, weight_decay=1e-4), loss=EMLLoss())
        rng = np.random.default_rng(0)
        images = rng.uniform(0, 255, (batch, *input_size, 3)).astype("float32")
        fixations = (rng.uniform(size=(batch, *input_size)) < 0.01).astype("float32")
        density = rng.uniform(size=(batch, *input_size)).astype("float32")
        density /= density.sum(axis=(1, 2), keepdims=True)
        targets = np.stack([density, fixations], axis=-1)
        gpus = tf.config.list_logical_devices("GPU")
        rss_built_kb = _status_kb("VmRSS")
        reset = _reset_peak_rss()
        if gpus:
            tf.config.experimental.reset_memory_stats("GPU:0")
        first_loss = float(model.train_on_batch(images, targets))  # traces the step
        times = []
        for _ in range(config["steps"]):
            start = time.perf_counter()
            loss = float(model.train_on_batch(images, targets))
            times.append(time.perf_counter() - start)
        peak_kb = _status_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = {
            **config,
            "trainable_params": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
            "rss_built_mb": rss_built_kb / 1024,
            "train_peak_rss_mb": peak_kb / 1024,
            "peak_is_training_only": reset,
            "step_s": statistics.median(times),
            "losses_finite": bool(np.isfinite([first_loss, loss]).all()),
        }
        if gpus:
            result["gpu_peak_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return result


def _ratio(a, b):
    return a / b if b else float("nan")


def _report(results, precisions):
    lines = [f"{'config':<34} {'precision':<9} {'params':>12} {'built MB':>9} {'train peak MB':>14} "
             f"{'peak-built MB':>14} {'step s':>8}" + ("  GPU peak MB" if "gpu_peak_mb" in results[0] else "")]
    for r in results:
        name = f"{r['kind']}({'+'.join(r['backbones'])})"
        line = (f"{name:<34} {r['precision']:<9} {r['trainable_params']:>12,} {r['rss_built_mb']:>9.0f} "
                f"{r['train_peak_rss_mb']:>14.0f} {r['train_peak_rss_mb'] - r['rss_built_mb']:>14.0f} "
                f"{r['step_s']:>8.3f}")
        if "gpu_peak_mb" in r:
            line += f"  {r['gpu_peak_mb']:>11.0f}"
        lines.append(line)
    by_key = {(r["kind"], r["precision"]): r for r in results}
    lines.append("")
    for precision in precisions:
        enc, joint = by_key[("encoder", precision)], by_key[("joint", precision)]
        lines.append(
            f"joint / encoder ({precision}): train peak RSS x{_ratio(joint['train_peak_rss_mb'], enc['train_peak_rss_mb']):.2f}, "
            f"peak-built x{_ratio(joint['train_peak_rss_mb'] - joint['rss_built_mb'], enc['train_peak_rss_mb'] - enc['rss_built_mb']):.2f}, "
            f"step time x{_ratio(joint['step_s'], enc['step_s']):.2f}"
            + (f", GPU peak x{_ratio(joint['gpu_peak_mb'], enc['gpu_peak_mb']):.2f}" if "gpu_peak_mb" in enc else "")
        )
    for kind in ("encoder", "joint"):
        for precision in precisions[1:]:
            base, other = by_key[(kind, precisions[0])], by_key[(kind, precision)]
            lines.append(
                f"{kind} {precision} / {precisions[0]}: train peak RSS x{_ratio(other['train_peak_rss_mb'], base['train_peak_rss_mb']):.2f}, "
                f"step time x{_ratio(other['step_s'], base['step_s']):.2f}"
            )
    return "\n".join(lines)


def main(argv):
    del argv
    if fresh_process.serve_worker(_measure):
        return
    height, width = cli.parse_size(FLAGS.input_size, "input_size")
    common = {"input_size": [height, width], "batch_size": FLAGS.batch_size, "steps": FLAGS.steps}
    results = []
    for kind, backbones in (("encoder", [FLAGS.encoder]), ("joint", list(FLAGS.joint))):
        for precision in FLAGS.precisions:
            config = {**common, "kind": kind, "backbones": backbones, "precision": precision}
            logging.info("measuring %s", config)
            results.append(fresh_process.run_in_fresh_process(__file__, config))
    print(_report(results, list(FLAGS.precisions)))
    if FLAGS.out:
        from keras_emlnet import atomic_files

        atomic_files.write_json_atomic(os.path.join(FLAGS.out, "results.json"), {"flags": common, "results": results})


if __name__ == "__main__":
    app.run(main)
