"""absl flags the train CLIs share, defined when a CLI runs, never at import.

`define_data_flags` (--data_dir, --dataset, --skip_bad) serves every train
CLI; `define_training_flags` adds --workdir, --verbose and the TrainConfig
flags of train.encoder, train.decoder and train.finetune, and
`training_progress` turns --verbose into Keras's `fit` verbosity and the
callbacks that go with it. absl flags are
process-wide, so one name may be defined once per process: defining them in
each CLI's `define_flags` lets every CLI be imported into one process (a
notebook, the demo, the tests) without a clash, while the definitions
(names, choices, help) are written once, here.

Training flags default to None, meaning "the recipe's value": each CLI
passes its own recipe (a `TrainConfig`) to `train_config_from_flags`, so one
definition serves the encoder recipe (batch 8, 10 epochs, x0.1 after 5) and
the decoder recipe (batch 32, 5 epochs, x0.1 at 3). The values actually used
are logged and recorded in `<workdir>/config.json`.
"""

from absl import flags, logging

from keras_emlnet import cli
from keras_emlnet.models import postprocess

DATASETS = ("salicon", "mit1003", "cat2000")
_RECIPE = "unset: the CLI's recipe value"

# Flags defined below count as the calling CLI's own (listed by its --help),
# not as this module's.
flags.disclaim_key_flags()


def define_data_flags(flag_values=flags.FLAGS, *, dataset_default, datasets=DATASETS):
    """Defines --data_dir, --dataset and --skip_bad in `flag_values`.

    Args:
        flag_values: the absl FlagValues to define them in.
        dataset_default: the default of --dataset; None where the CLI
            requires it (it then marks it required itself).
        datasets: the --dataset values the CLI accepts.

    Returns:
        The names defined.
    """
    flags.DEFINE_string("data_dir", None, "Dataset root folder (see keras_emlnet.data for the expected layout).",
                        flag_values=flag_values)
    flags.DEFINE_enum("dataset", dataset_default, list(datasets), "Which dataset `data_dir` holds.",
                      flag_values=flag_values)
    flags.DEFINE_boolean("skip_bad", False, "Report and skip corrupt samples instead of stopping at the first one.",
                         flag_values=flag_values)
    return ("data_dir", "dataset", "skip_bad")


def define_training_flags(flag_values=flags.FLAGS, *, dataset_default="salicon", datasets=DATASETS):
    """Defines --workdir, the data flags (--dataset: `dataset_default` among `datasets`) and the TrainConfig flags."""
    flags.DEFINE_string("workdir", None, "Run folder: config.json, backup/, checkpoints/, logs/ and the final "
                        "model. Rerunning the same command there resumes the run.", flag_values=flag_values)
    define_data_flags(flag_values, dataset_default=dataset_default, datasets=datasets)
    cli.define_verbose_flag(flag_values)
    flags.DEFINE_integer("epochs", None, f"Epochs in all ({_RECIPE}).", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("batch_size", None, f"Global batch size, split across replicas ({_RECIPE}).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_float("learning_rate", None, f"Learning rate of the first epoch ({_RECIPE}).",
                       flag_values=flag_values)
    flags.DEFINE_list("lr_decay_epochs", None, "0-based epochs at which the learning rate is multiplied by "
                      f"--lr_decay_factor, comma-separated; empty for none ({_RECIPE}).", flag_values=flag_values)
    flags.DEFINE_float("lr_decay_factor", None, f"Learning-rate multiplier at each decay epoch ({_RECIPE}).",
                       flag_values=flag_values)
    flags.DEFINE_float("momentum", None, f"SGD momentum ({_RECIPE}).", flag_values=flag_values)
    flags.DEFINE_float("weight_decay", None, f"L2 weight decay added to the gradient, as PyTorch SGD ({_RECIPE}).",
                       flag_values=flag_values)
    flags.DEFINE_enum("mixed_precision", None, ["bfloat16", "float16"], "Mixed-precision compute dtype "
                      "(variables and loss stay float32); unset: float32.", flag_values=flag_values)
    flags.DEFINE_enum("strategy", None, ["mirrored", "multi_worker"], "tf.distribute strategy: all local "
                      "GPUs (mirrored) or the TF_CONFIG cluster's workers (multi_worker: start the same command "
                      "on every worker); unset: one device. --distribution is an alias.", flag_values=flag_values)
    flags.DEFINE_alias("distribution", "strategy", flag_values=flag_values)
    flags.DEFINE_string("input_size", None, f"Model input size HxW, e.g. 480x640 ({_RECIPE}).",
                        flag_values=flag_values)
    flags.DEFINE_integer("max_steps", None, "Stop after this many optimizer steps in all (smoke runs).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (data repeated); unset: one pass.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("validation_steps", None, "Validation batches per epoch; unset: all.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_integer("seed", None, f"Seed of initialisation and data order ({_RECIPE}).",
                         flag_values=flag_values)


def define_blur_flag(flag_values=flags.FLAGS):
    """Defines --blur_sigma (the saved model's blur; unset: the paper's, scaled to the input size)."""
    flags.DEFINE_float("blur_sigma", None, "Gaussian blur sigma of the saved model, in pixels at the model size; "
                       "unset: the paper's post-processing (sigma 5 at 480x640, as the released EML-NET code, "
                       "scaled with the input height); 0: no blur.", lower_bound=0.0, flag_values=flag_values)


def blur_sigma_from_flags(input_size, flag_values=flags.FLAGS):
    """--blur_sigma as a model's `blur_sigma`: unset -> the paper's at `input_size`, 0 -> None (no blur)."""
    value = flag_values["blur_sigma"].value
    if value is None:
        return postprocess.paper_blur_sigma(input_size)
    return float(value) or None


def train_config_from_flags(recipe, flag_values=flags.FLAGS):
    """Returns `recipe` (a TrainConfig) with every training flag the user set applied.

    Raises:
        cli.FlagError: a flag value that TrainConfig rejects (the message names it).
    """
    overrides = {}
    decay = flag_values["lr_decay_epochs"].value
    if decay is not None:
        try:
            overrides["lr_decay_epochs"] = tuple(int(epoch) for epoch in decay if epoch.strip())
        except ValueError:
            raise cli.FlagError(f"--lr_decay_epochs must be comma-separated integers, got {decay!r}") from None
    if flag_values["strategy"].value is not None:  # TrainConfig.distribution
        overrides["distribution"] = flag_values["strategy"].value
    if flag_values["input_size"].value is not None:
        overrides["input_size"] = cli.parse_size(flag_values["input_size"].value, "input_size")
    return cli.config_from_flags(type(recipe), flag_values, base=recipe, overrides=overrides)


def training_progress(flag_values=flags.FLAGS):
    """(fit verbosity, callbacks) for --verbose.

    1 (a terminal): Keras's per-step bar with the metrics; 2 (logs, CI):
    Keras's one line per epoch; 0: no Keras output, an `EpochLogger` line
    per epoch through absl logging instead (one way to see each epoch, not two).
    """
    from keras_emlnet.training.callbacks import EpochLogger  # Keras: loaded by the training CLIs only

    verbose = cli.verbosity_from_flags(flag_values)
    return verbose, ([EpochLogger()] if verbose == 0 else [])


def log_training_result(result):
    """Logs where a finished training run resumed from and the model it wrote."""
    if result.initial_epoch:
        logging.info("resumed from epoch %d", result.initial_epoch)
    logging.info("wrote %s", result.final_model_path)
