r"""Trains the EML-NET decoder over frozen, trained encoders (paper §3.3).

    python -m train.decoder \
        --encoders runs/nasnet/encoder.keras,runs/densenet/encoder.keras \
        --dataset salicon --data_dir DIR --workdir runs/emlnet

Only the decoder is trained (batch 32, 5 epochs, learning rate 0.01, x0.1
from 0-based epoch 3). The saved model blurs its maps as the paper's code
does (sigma 5 px at 480x640, scaled to --input_size; --blur_sigma 0: none). Writes config.json, backup/ and checkpoints/, TensorBoard logs/ and the
final `emlnet.keras` in --workdir; killed and rerun with the same command, it
continues from the last finished epoch. Adding an encoder later is the same
command with one more path (and a new --workdir). Training flags (--epochs,
--learning_rate, --mixed_precision, --distribution, --input_size,
--max_steps, ...) are shared with train.encoder: see train/flags_common.py.
"""

from absl import app, flags, logging

from keras_emlnet.models import postprocess
from keras_emlnet.training import decoder_stage
from train import flags_common

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines this CLI's flags in `flag_values`: the shared training flags, --encoders and the output's."""
    flags_common.define_training_flags(flag_values)
    flags.DEFINE_list("encoders", None, "Comma-separated .keras files of trained encoders (from train.encoder), "
                      "one per backbone, all trained at --input_size.", flag_values=flag_values)
    flags.DEFINE_enum("output_mode", postprocess.MINMAX, list(postprocess.OUTPUT_MODES),
                      "Output mode of the saved emlnet.keras (training always uses the raw decoder map).",
                      flag_values=flag_values)
    flags_common.define_blur_flag(flag_values)
    flags.mark_flags_as_required(["encoders", "data_dir", "workdir"], flag_values=flag_values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = flags_common.train_config_from_flags(decoder_stage.DECODER_RECIPE)
    verbose, callbacks = flags_common.training_progress()
    logging.info("training the decoder over %s with %s", FLAGS.encoders, config)
    try:
        result = decoder_stage.train_decoder(
            FLAGS.encoders, FLAGS.dataset, FLAGS.data_dir, config, FLAGS.workdir,
            output_mode=FLAGS.output_mode, blur_sigma=flags_common.blur_sigma_from_flags(config.input_size),
            skip_bad=FLAGS.skip_bad, callbacks=callbacks, verbose=verbose,
        )
    except (ValueError, FileNotFoundError) as error:  # bad files, sizes or a mismatched workdir: named
        raise app.UsageError(str(error)) from None
    flags_common.log_training_result(result)


if __name__ == "__main__":
    define_flags()
    app.run(main)
