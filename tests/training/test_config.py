"""TrainConfig: the paper's defaults, JSON round trip, validation naming the field."""

import dataclasses
import json

import pytest

from keras_emlnet.training.config import TrainConfig

CONFIG = TrainConfig(epochs=3, batch_size=4, learning_rate=0.01, lr_decay_epochs=(2,), input_size=(32, 48))


def test_config_defaults_are_the_paper_encoder_recipe():
    config = TrainConfig()
    assert (config.epochs, config.batch_size, config.lr_decay_epochs, config.lr_decay_factor) == (10, 8, (5,), 0.1)
    assert (config.momentum, config.weight_decay, config.input_size) == (0.9, 1e-4, (480, 640))
    assert config.learning_rate == 0.01


def test_config_round_trips_through_json():
    config = dataclasses.replace(CONFIG, mixed_precision="bfloat16", max_steps=7, distribution="mirrored")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    "change, field",
    [({"epochs": 0}, "epochs"), ({"learning_rate": 0.0}, "learning_rate"), ({"lr_decay_epochs": (5, 3)}, "lr_decay_epochs"),
     ({"mixed_precision": "int8"}, "mixed_precision"), ({"distribution": "tpu"}, "distribution"),
     ({"input_size": (0, 10)}, "input_size"), ({"max_steps": 0}, "max_steps")],
)
def test_config_rejects_bad_values_naming_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(CONFIG, **change)


def test_config_from_dict_rejects_unknown_settings():
    with pytest.raises(ValueError, match="lerning_rate"):
        TrainConfig.from_dict({"lerning_rate": 0.1})
