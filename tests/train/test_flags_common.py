"""The shared training flags: recipe defaults, overrides, parsing errors."""

import dataclasses

import pytest
from absl import app, flags

from keras_emlnet import cli
from keras_emlnet.training.config import TrainConfig
from train import flags_common

RECIPE = TrainConfig(epochs=5, batch_size=32, learning_rate=0.1, lr_decay_epochs=(3,))


@pytest.fixture
def flag_values():
    """Parses arguments into a fresh FlagValues holding the training flags (the global FLAGS stay untouched)."""

    def parse(*args):
        values = flags.FlagValues()
        flags_common.define_training_flags(values)
        values(["prog", *args])
        return values

    return parse


def test_unset_flags_keep_the_recipe(flag_values):
    assert flags_common.train_config_from_flags(RECIPE, flag_values()) == RECIPE


def test_set_flags_override_the_recipe(flag_values):
    values = flag_values("--epochs", "7", "--learning_rate", "0.02", "--lr_decay_epochs", "2,4",
                         "--input_size", "64x96", "--mixed_precision", "bfloat16", "--distribution", "mirrored",
                         "--max_steps", "3", "--steps_per_epoch", "5", "--validation_steps", "2", "--seed", "9",
                         "--weight_decay", "0", "--momentum", "0.5", "--lr_decay_factor", "0.5", "--batch_size", "4")
    expected = dataclasses.replace(
        RECIPE, epochs=7, learning_rate=0.02, lr_decay_epochs=(2, 4), input_size=(64, 96), mixed_precision="bfloat16",
        distribution="mirrored", max_steps=3, steps_per_epoch=5, validation_steps=2, seed=9, weight_decay=0.0,
        momentum=0.5, lr_decay_factor=0.5, batch_size=4)
    assert flags_common.train_config_from_flags(RECIPE, values) == expected


def test_empty_decay_list_means_a_constant_rate(flag_values):
    assert flags_common.train_config_from_flags(RECIPE, flag_values("--lr_decay_epochs", "")).lr_decay_epochs == ()


@pytest.mark.parametrize("text, expected", [("480x640", (480, 640)), ("32X48", (32, 48))])
def test_parse_input_size(text, expected):
    assert cli.parse_size(text, "input_size") == expected


@pytest.mark.parametrize("text", ["480", "480x", "ax640", "0x640", "1x2x3"])
def test_parse_input_size_rejects_bad_text(text):
    with pytest.raises(ValueError, match="--input_size"):
        cli.parse_size(text, "input_size")


def test_bad_values_name_the_setting(flag_values):
    with pytest.raises(ValueError, match="lr_decay_epochs"):
        flags_common.train_config_from_flags(RECIPE, flag_values("--lr_decay_epochs", "3,a"))
    with pytest.raises(ValueError, match="learning_rate"):
        flags_common.train_config_from_flags(RECIPE, flag_values("--learning_rate", "-1"))


def test_rejected_values_are_usage_errors_naming_the_flag_as_typed(flag_values):
    # app.run prints a UsageError under the short help, without a traceback.
    with pytest.raises(app.UsageError, match=r"learning_rate must be > 0.*\(--learning_rate=-1\.0\)"):
        flags_common.train_config_from_flags(RECIPE, flag_values("--learning_rate", "-1"))
    with pytest.raises(app.UsageError, match="--input_size must be HxW"):
        flags_common.train_config_from_flags(RECIPE, flag_values("--input_size", "480by640"))


@pytest.mark.parametrize("flag", ["--strategy", "--distribution"])  # the contract's name and the older alias
def test_strategy_flag_sets_the_distribution(flag_values, flag):
    config = flags_common.train_config_from_flags(RECIPE, flag_values(flag, "multi_worker"))
    assert config == dataclasses.replace(RECIPE, distribution="multi_worker")
    with pytest.raises(flags.IllegalFlagValueError):
        flag_values(flag, "tpu")


@pytest.mark.parametrize("verbose, epoch_logger", [("0", True), ("1", False), ("2", False)])
def test_training_progress_shows_each_epoch_one_way(flag_values, verbose, epoch_logger):
    # 1 and 2 are Keras's own output (bar / line per epoch); 0 falls back to one absl line per epoch.
    from keras_emlnet.training.callbacks import EpochLogger

    fit_verbose, callbacks = flags_common.training_progress(flag_values("--verbose", verbose))
    assert fit_verbose == int(verbose)
    assert [type(c) for c in callbacks] == ([EpochLogger] if epoch_logger else [])
