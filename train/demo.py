r"""Runs EML-NET end to end on generated data (`make demo`).

    python -m train.demo                       # the default: about 10-15 min on 2 CPU cores
    python -m train.demo --out /tmp/demo --input_size 64x96 --encoder_steps 1 --decoder_steps 1

Generates a small SALICON-format dataset, trains the `nasnet` and `densenet161`
encoders (from scratch: pretrained weights cannot be fetched here) at a
reduced input size for a few steps, trains the decoder over both, evaluates
on the held-out split beside the center-bias baseline, exports a versioned
SavedModel, starts the local TF-Serving-compatible server, scores test images
through the gRPC client and writes heatmap overlays — all in --out, which it
names at the end. The server it starts is stopped also when a stage fails.
See train/demo_pipeline.py.
"""

import signal
import sys

import keras
from absl import app, flags, logging

from train import demo_pipeline

_DEFAULTS = demo_pipeline.DemoConfig()
_OUT = flags.DEFINE_string("out", _DEFAULTS.out, "Output folder (a previous demo's folder is replaced).")
_BACKBONES = flags.DEFINE_list("backbones", list(_DEFAULTS.backbones), "Encoder backbones (registry names).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", _DEFAULTS.num_images,
                                   "Generated images: half train, a quarter val, a quarter test.", lower_bound=4)
_IMAGE_SIZE = flags.DEFINE_string("image_size", "x".join(map(str, _DEFAULTS.image_size)),
                                  "Generated image size HxW (SALICON: 480x640).")
_INPUT_SIZE = flags.DEFINE_string("input_size", "x".join(map(str, _DEFAULTS.input_size)),
                                  "Model input size HxW (the paper: 480x640; NASNet needs >= 32).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Training batch size.", lower_bound=1)
_ENCODER_STEPS = flags.DEFINE_integer("encoder_steps", _DEFAULTS.encoder_steps, "Training steps per encoder.",
                                      lower_bound=1)
_DECODER_STEPS = flags.DEFINE_integer("decoder_steps", _DEFAULTS.decoder_steps, "Decoder training steps.",
                                      lower_bound=1)
_CLIENT_IMAGES = flags.DEFINE_integer("client_images", _DEFAULTS.client_images,
                                      "Test images scored through the server.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of data, initialisation and metrics.")


def parse_size(text, flag):
    """"HxW" -> (H, W); app.UsageError naming the flag otherwise."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise app.UsageError(f"--{flag} must be HxW such as 96x128, got {text!r}") from None
    if min(height, width) < 1:
        raise app.UsageError(f"--{flag} must be positive, got {text!r}")
    return height, width


class StepLogger(keras.callbacks.Callback):
    """Logs every training step and validation (the demo's progress)."""

    def on_train_begin(self, logs=None):
        logging.info("  building the training step (the first step traces the whole graph: "
                     "NASNetLarge takes minutes on a CPU)")

    def on_train_batch_end(self, batch, logs=None):
        logging.info("  step %d: loss %.4f", batch + 1, float((logs or {}).get("loss", float("nan"))))

    def on_test_end(self, logs=None):
        logging.info("  validation: %s", ", ".join(f"{k}={float(v):.4f}" for k, v in sorted((logs or {}).items())))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = demo_pipeline.DemoConfig(
            out=_OUT.value, backbones=tuple(_BACKBONES.value), num_images=_NUM_IMAGES.value,
            image_size=parse_size(_IMAGE_SIZE.value, "image_size"),
            input_size=parse_size(_INPUT_SIZE.value, "input_size"),
            batch_size=_BATCH_SIZE.value, encoder_steps=_ENCODER_STEPS.value, decoder_steps=_DECODER_STEPS.value,
            client_images=_CLIENT_IMAGES.value, seed=_SEED.value,
        )
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    # SIGTERM (e.g. `timeout`, a CI cancel) unwinds like Ctrl-C, so the
    # pipeline's `finally` stops the server it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    logging.info("demo settings: %s", config.to_dict())
    try:
        result = demo_pipeline.run_demo(config, training_callbacks=[StepLogger()])
    except FileExistsError as error:
        raise app.UsageError(str(error)) from None
    print()
    print("Evaluation on the held-out (val) split, original resolution:")
    print(result.table)
    print("Stage times (s):", ", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items()),
          f"- total {sum(result.seconds.values()):.0f}")
    print(f"All outputs are in {result.out}")
    for what, path in result.paths.items():
        print(f"  {what}: {path}")


if __name__ == "__main__":
    app.run(main)
