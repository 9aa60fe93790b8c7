r"""Trains one EML-NET encoder (paper §3.1–3.2).

    python -m train.encoder --backbone nasnet --weights imagenet \
        --dataset salicon --data_dir DIR --workdir runs/nasnet

Writes config.json, backup/ and checkpoints/, TensorBoard logs/ and the final
`encoder.keras` in --workdir. Killed and rerun with the same command, it
continues from the last finished epoch. Training flags (--epochs,
--learning_rate, --mixed_precision, --distribution, --input_size,
--max_steps, ...) are shared with train.decoder: see train/flags_common.py.
"""

from absl import app, flags, logging

from keras_emlnet.models.backbones import BACKBONES, get_backbone
from keras_emlnet.training import encoder_stage
from keras_emlnet.training.config import ConfigMismatchError
from train import flags_common

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines this CLI's flags in `flag_values`: the shared training flags, --backbone and --weights."""
    flags_common.define_training_flags(flag_values)
    flags.DEFINE_string("backbone", None, f"Backbone registry name: {', '.join(sorted(BACKBONES))}.",
                        flag_values=flag_values)
    flags.DEFINE_string("weights", encoder_stage.PRETRAINED, "Initial backbone weights: 'pretrained' (the "
                        "paper's: 'imagenet' for nasnet and resnet50, 'places365' for densenet161), a named source, "
                        "a weights file, or 'none' for random initialisation.", flag_values=flag_values)
    flags.mark_flags_as_required(["backbone", "data_dir", "workdir"], flag_values=flag_values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        get_backbone(FLAGS.backbone)
    except ValueError as error:  # an unknown name: the message lists the registry
        raise app.UsageError(str(error)) from None
    config = flags_common.train_config_from_flags(encoder_stage.ENCODER_RECIPE)
    verbose, callbacks = flags_common.training_progress()
    logging.info("training encoder %s with %s", FLAGS.backbone, config)
    try:
        result = encoder_stage.train_encoder(
            FLAGS.backbone, FLAGS.dataset, FLAGS.data_dir, config, FLAGS.workdir,
            weights=FLAGS.weights, skip_bad=FLAGS.skip_bad, callbacks=callbacks, verbose=verbose,
        )
    except (ConfigMismatchError, FileNotFoundError) as error:  # a missing weights file names itself
        raise app.UsageError(str(error)) from None
    flags_common.log_training_result(result)


if __name__ == "__main__":
    define_flags()
    app.run(main)
