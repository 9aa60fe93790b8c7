"""absl flags shared by train.encoder, train.decoder and train.finetune.

Importing this module defines the flags once (absl flags are process-wide);
the dataset flags come from `train.flags_data`, which train.evaluate shares.
Training flags default to None, meaning "the recipe's value": each CLI
passes its own recipe (a `TrainConfig`) to `train_config_from_flags`, so one
definition serves the encoder recipe (batch 8, 10 epochs, x0.1 after 5) and
the decoder recipe (batch 32, 5 epochs, x0.1 at 3). The values actually used
are logged and recorded in `<workdir>/config.json`.
"""

import dataclasses

from absl import flags

from train import flags_data

_RECIPE = "unset: the CLI's recipe value"

# --- the run and its data ---------------------------------------------------
flags.DEFINE_string("workdir", None, "Run folder: config.json, backup/, checkpoints/, logs/ and the final model. "
                    "Rerunning the same command there resumes the run.")
flags_data.define_data_flags(flags.FLAGS, dataset_default="salicon")

# --- TrainConfig --------------------------------------------------------------
flags.DEFINE_integer("epochs", None, f"Epochs in all ({_RECIPE}).", lower_bound=1)
flags.DEFINE_integer("batch_size", None, f"Global batch size, split across replicas ({_RECIPE}).", lower_bound=1)
flags.DEFINE_float("learning_rate", None, f"Learning rate of the first epoch ({_RECIPE}).")
flags.DEFINE_list("lr_decay_epochs", None, "0-based epochs at which the learning rate is multiplied by "
                  f"--lr_decay_factor, comma-separated; empty for none ({_RECIPE}).")
flags.DEFINE_float("lr_decay_factor", None, f"Learning-rate multiplier at each decay epoch ({_RECIPE}).")
flags.DEFINE_float("momentum", None, f"SGD momentum ({_RECIPE}).")
flags.DEFINE_float("weight_decay", None, f"L2 weight decay added to the gradient, as PyTorch SGD ({_RECIPE}).")
flags.DEFINE_enum("mixed_precision", None, ["bfloat16", "float16"], "Mixed-precision compute dtype "
                  "(variables and loss stay float32); unset: float32.")
flags.DEFINE_enum("distribution", None, ["mirrored", "multi_worker"], "tf.distribute strategy: all local "
                  "GPUs (mirrored) or a TF_CONFIG cluster (multi_worker); unset: one device.")
flags.DEFINE_string("input_size", None, f"Model input size HxW, e.g. 480x640 ({_RECIPE}).")
flags.DEFINE_integer("max_steps", None, "Stop after this many optimizer steps in all (smoke runs).", lower_bound=1)
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (data repeated); unset: one pass.", lower_bound=1)
flags.DEFINE_integer("validation_steps", None, "Validation batches per epoch; unset: all.", lower_bound=1)
flags.DEFINE_integer("seed", None, f"Seed of initialisation and data order ({_RECIPE}).")

_SCALAR_FIELDS = (
    "epochs", "batch_size", "learning_rate", "lr_decay_factor", "momentum", "weight_decay",
    "mixed_precision", "distribution", "max_steps", "steps_per_epoch", "validation_steps", "seed",
)


def parse_input_size(text):
    """Parses "HxW" (e.g. "480x640") into (H, W); raises ValueError naming the flag."""
    parts = str(text).lower().split("x")
    try:
        height, width = (int(part) for part in parts)
    except ValueError:
        raise ValueError(f"--input_size must be HxW such as 480x640, got {text!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"--input_size must be positive, got {text!r}")
    return height, width


def train_config_from_flags(recipe, flag_values=flags.FLAGS):
    """Returns `recipe` (a TrainConfig) with every flag the user set applied.

    Raises:
        ValueError: a flag value that TrainConfig rejects (the message names it).
    """
    overrides = {name: flag_values[name].value for name in _SCALAR_FIELDS if flag_values[name].value is not None}
    decay = flag_values["lr_decay_epochs"].value
    if decay is not None:
        try:
            overrides["lr_decay_epochs"] = tuple(int(epoch) for epoch in decay if epoch.strip())
        except ValueError:
            raise ValueError(f"--lr_decay_epochs must be comma-separated integers, got {decay!r}") from None
    if flag_values["input_size"].value is not None:
        overrides["input_size"] = parse_input_size(flag_values["input_size"].value)
    return dataclasses.replace(recipe, **overrides)

