r"""Runs EML-NET end to end on generated data (`make demo`).

    python -m train.demo             # the default: ~9 min on 2 free CPU cores, ~16 min under load
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

from absl import app, flags, logging

from keras_emlnet import cli
from train import demo_pipeline, demo_progress


def define_flags(flag_values=flags.FLAGS):
    """Defines this CLI's flags in `flag_values` when it runs, never at import."""
    defaults = demo_pipeline.DemoConfig()
    flags.DEFINE_string("out", defaults.out, "Output folder (a previous demo's folder is replaced).",
                        flag_values=flag_values)
    flags.DEFINE_list("backbones", list(defaults.backbones), "Encoder backbones (registry names).",
                      flag_values=flag_values)
    flags.DEFINE_integer("num_images", defaults.num_images, "Generated images: half train, a quarter val, "
                         "a quarter test.", lower_bound=4, flag_values=flag_values)
    flags.DEFINE_string("image_size", "x".join(map(str, defaults.image_size)),
                        "Generated image size HxW (SALICON: 480x640).", flag_values=flag_values)
    flags.DEFINE_string("input_size", "x".join(map(str, defaults.input_size)),
                        "Model input size HxW (the paper: 480x640; keep >= 64 when training from scratch).",
                        flag_values=flag_values)
    flags.DEFINE_integer("batch_size", defaults.batch_size, "Training batch size of every stage.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_integer("encoder_steps", defaults.encoder_steps, "Training steps per encoder.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_integer("decoder_steps", defaults.decoder_steps, "Decoder training steps.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_integer("client_images", defaults.client_images, "Test images scored through the server.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("seed", defaults.seed, "Seed of data, initialisation, data order and metrics.",
                         flag_values=flag_values)
    cli.define_verbose_flag(flag_values)


def config_from_flags(flag_values=flags.FLAGS):
    """The DemoConfig the flags describe; cli.FlagError naming a bad flag."""
    sizes = {name: cli.parse_size(flag_values[name].value, name) for name in ("image_size", "input_size")}
    return cli.config_from_flags(demo_pipeline.DemoConfig, flag_values, overrides=sizes)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = config_from_flags()
    verbose = cli.verbosity_from_flags()
    # SIGTERM (e.g. `timeout`, a CI cancel) unwinds like Ctrl-C, so the
    # pipeline's `finally` stops the server it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    logging.info("demo settings: %s", config.to_dict())
    try:
        # In logs (2) a line per training step; on a terminal (1) Keras's bar instead.
        steps = [demo_progress.StepLogger()] if verbose == 2 else []
        result = demo_pipeline.run_demo(config, training_callbacks=steps, verbose=verbose)
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
    define_flags()
    app.run(main)
