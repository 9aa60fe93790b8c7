r"""Fine-tunes a trained EML-NET on MIT1003 or CAT2000 with the paper's protocol.

    python -m train.finetune --dataset mit1003 --from runs/emlnet \
        --data_dir data/MIT1003 --workdir runs/emlnet_mit1003
    python -m train.evaluate --model runs/emlnet_mit1003/emlnet.keras \
        --data_dir data/MIT1003 --dataset mit1003 --split val

--from is a train.decoder workdir (its config.json lists the encoder files).
MIT1003: pad to 4:3, resize to 480x640, 903/100 split; CAT2000: resize,
1800/200 split. The encoders are fine-tuned first (encoder recipe), then the
decoder (decoder recipe, warm-started from --from's). Training flags
(--epochs, --batch_size, --max_steps, --mixed_precision, --distribution, ...)
apply to both stages; --input_size must stay the source's. The fine-tuned
model blurs as the paper's code (sigma 5 at 480x640, scaled; --blur_sigma
sets another, 0 none). Killed and rerun
with the same command, it continues. See keras_emlnet/training/finetune.py.
"""

import dataclasses

from absl import app, flags, logging

from keras_emlnet.training import decoder_stage
from keras_emlnet.training import encoder_stage
from keras_emlnet.training import finetune as finetuning
from keras_emlnet.training.config import ConfigMismatchError
from train import flags_common

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines this CLI's flags in `flag_values`: the shared training flags and --from.

    --dataset is required and lists only the fine-tuning datasets (no default: SALICON is what
    --from was trained on, not a fine-tuning protocol).
    """
    flags_common.define_training_flags(flag_values, dataset_default=None, datasets=finetuning.FINETUNE_DATASETS)
    flags.DEFINE_string("from", None, "Workdir of the train.decoder run to fine-tune (holds config.json and "
                        "emlnet.keras).", flag_values=flag_values)
    flags_common.define_blur_flag(flag_values)
    flags.mark_flags_as_required(["from", "dataset", "data_dir", "workdir"], flag_values=flag_values)


def stage_configs(source_input_size, flag_values=FLAGS):
    """(encoder TrainConfig, decoder TrainConfig): the recipes at the source's input size, plus flags."""
    configs = []
    for recipe in (encoder_stage.ENCODER_RECIPE, decoder_stage.DECODER_RECIPE):
        recipe = dataclasses.replace(recipe, input_size=source_input_size)
        configs.append(flags_common.train_config_from_flags(recipe, flag_values))
    return tuple(configs)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        plan = finetuning.protocol(FLAGS.dataset)
        source = finetuning.read_source_run(FLAGS["from"].value)
        encoder_config, decoder_config = stage_configs(source.input_size)
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(str(error)) from None
    logging.info("fine-tuning %s on %s: %s", source.workdir, FLAGS.dataset, plan)
    verbose, callbacks = flags_common.training_progress()
    try:
        result = finetuning.finetune(
            FLAGS.dataset, source.workdir, FLAGS.data_dir, FLAGS.workdir,
            encoder_config=encoder_config, decoder_config=decoder_config,
            blur_sigma=flags_common.blur_sigma_from_flags(source.input_size), skip_bad=FLAGS.skip_bad,
            callbacks=callbacks, verbose=verbose,
        )
    except (ConfigMismatchError, FileNotFoundError) as error:
        raise app.UsageError(str(error)) from None
    logging.info("wrote %s", result.final_model_path)


if __name__ == "__main__":
    define_flags()
    app.run(main)
