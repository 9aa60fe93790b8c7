"""The dataset flags the train CLIs share: --data_dir, --dataset, --skip_bad.

absl flags are process-wide, so one name may be defined once per process.
`train.flags_common` defines these at import for the training CLIs
(train.encoder, train.decoder, train.finetune); `train.evaluate` defines
them when it runs, through the same function, so the definitions (names,
choices, help) are written once and importing several CLIs into one
process (a notebook, the demo, the tests) never defines a flag twice.
"""

from absl import flags

DATASETS = ("salicon", "mit1003", "cat2000")

# Flags defined below count as the calling CLI's own (listed by its --help),
# not as this module's.
flags.disclaim_key_flags()


def define_data_flags(flag_values=flags.FLAGS, *, dataset_default):
    """Defines --data_dir, --dataset and --skip_bad in `flag_values`.

    Args:
        flag_values: the absl FlagValues to define them in.
        dataset_default: the default of --dataset; None where the CLI
            requires it (it then marks it required itself).

    Returns:
        The names defined.
    """
    flags.DEFINE_string("data_dir", None, "Dataset root folder (see keras_emlnet.data for the expected layout).",
                        flag_values=flag_values)
    flags.DEFINE_enum("dataset", dataset_default, list(DATASETS), "Which dataset `data_dir` holds.",
                      flag_values=flag_values)
    flags.DEFINE_boolean("skip_bad", False, "Report and skip corrupt samples instead of stopping at the first one.",
                         flag_values=flag_values)
    return ("data_dir", "dataset", "skip_bad")
