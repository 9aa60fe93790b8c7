"""train_encoder on generated SALICON data with the tiny backbone spec."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from keras_emlnet import testing
from keras_emlnet.data import generate_dataset
from keras_emlnet.training import encoder_stage
from keras_emlnet.training.config import ConfigMismatchError

CONFIG = dataclasses.replace(encoder_stage.ENCODER_RECIPE, epochs=1, batch_size=2, input_size=(32, 48))


@pytest.fixture(scope="module")
def salicon_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("salicon")
    generate_dataset("salicon", str(root), 8, seed=0, image_size=(48, 64))  # 4 train, 2 val, 2 test
    return root


@pytest.fixture(scope="module")
def backbone_weights(tmp_path_factory):
    """Pretrained-backbone stand-in: a `.weights.h5` file of the tiny backbone."""
    path = tmp_path_factory.mktemp("weights") / "tiny_backbone.weights.h5"
    spec = testing.tiny_backbone_spec("tiny", seed=5)
    spec.constructor((32, 48, 3), None).save_weights(path)
    return path


def test_recipe_is_the_papers():
    recipe = encoder_stage.ENCODER_RECIPE
    assert (recipe.batch_size, recipe.epochs, recipe.lr_decay_epochs, recipe.input_size) == (8, 10, (5,), (480, 640))
    assert (recipe.momentum, recipe.weight_decay, recipe.learning_rate) == (0.9, 1e-4, 0.01)


def test_trains_saves_and_resumes_without_the_weights_file(salicon_dir, backbone_weights, tmp_path):
    spec = testing.tiny_backbone_spec("tiny", seed=5)
    workdir = tmp_path / "run"
    first = encoder_stage.train_encoder(spec, "salicon", str(salicon_dir), CONFIG, str(workdir),
                                           weights=str(backbone_weights))
    assert first.final_model_path == str(workdir / "encoder.keras")
    for metric in ("loss", "nss", "cc", "kld", "sim", "val_loss", "val_nss", "val_cc", "val_kld", "val_sim"):
        assert np.isfinite(first.history[metric]).all(), metric

    recorded = json.loads((workdir / "config.json").read_text())
    assert recorded["run"] == {
        "stage": "encoder", "backbone": "tiny", "weights": str(backbone_weights), "dataset": "salicon",
        "data_dir": str(salicon_dir), "skip_bad": False, "batchnorm_momentum": 0.9, "loss": "EMLLoss",
        "metrics": ["NSS", "CC", "KLD", "SIM"],
    }
    encoder = keras.saving.load_model(first.final_model_path)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 48, 3)).astype("float32")
    np.testing.assert_allclose(encoder.predict(images, verbose=0), first.model.predict(images, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert encoder.output.shape == (None, 32, 48, 1)

    # Extend the run after the pretrained file is gone: the backup has every weight.
    backbone_weights.unlink()
    second = encoder_stage.train_encoder(spec, "salicon", str(salicon_dir), dataclasses.replace(CONFIG, epochs=2),
                                            str(workdir), weights=str(backbone_weights))
    assert second.initial_epoch == 1 and len(second.history["loss"]) == 1
    assert second.steps == 2 * 2  # 4 train images, batch 2, 2 epochs

    with pytest.raises(ConfigMismatchError, match="run.dataset"):
        encoder_stage.train_encoder(spec, "mit1003", str(salicon_dir), CONFIG, str(workdir),
                                       weights=str(backbone_weights))


def test_unknown_backbone_lists_the_registry_before_reading_data(tmp_path):
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg16'.*densenet161.*nasnet.*resnet50"):
        encoder_stage.train_encoder("vgg16", "salicon", str(tmp_path / "missing"), CONFIG, str(tmp_path / "run"))


def test_unknown_weights_are_refused(tmp_path):
    with pytest.raises(ValueError, match="places365"):
        encoder_stage.train_encoder("nasnet", "salicon", str(tmp_path), CONFIG, str(tmp_path / "run"),
                                       weights="places365")


def test_resumed_run_trains_on_the_epochs_an_uninterrupted_run_sees(salicon_dir, tmp_path):
    # The data order and flips of epoch e are a function of (seed, e): a run stopped after
    # epoch 0 and resumed trains epochs 1 and 2 on the same batches as a run that never
    # stopped, so it ends with the same weights (a resumed run used to replay epoch 0's order).
    spec = testing.tiny_backbone_spec("tiny", seed=5)
    config = dataclasses.replace(CONFIG, epochs=3, batch_size=3, lr_decay_epochs=(2,))  # 4 images: 3 + 1
    whole = encoder_stage.train_encoder(spec, "salicon", str(salicon_dir), config, str(tmp_path / "whole"))
    encoder_stage.train_encoder(spec, "salicon", str(salicon_dir), dataclasses.replace(config, epochs=1),
                                str(tmp_path / "resumed"))
    resumed = encoder_stage.train_encoder(spec, "salicon", str(salicon_dir), config, str(tmp_path / "resumed"))
    assert resumed.initial_epoch == 1 and resumed.steps == whole.steps == 6
    for ours, theirs in zip(resumed.model.weights, whole.model.weights, strict=True):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-6, err_msg=ours.path)


def _input_batchnorm_backbone(input_shape, weights):
    """A backbone whose first layer is BatchNorm over the (unpreprocessed) image, then the tiny convs."""
    del weights
    inputs = keras.Input(input_shape)
    x = keras.layers.BatchNormalization(name="input_bn")(inputs)
    tiny = testing.tiny_backbone_spec("tiny").constructor(input_shape, None)
    return keras.Model(inputs, tiny(x), name="bn_backbone")


def test_batchnorm_moves_with_pytorchs_momentum(salicon_dir, tmp_path):
    # One step on all 4 train images (batch 4): the input BN's moving mean starts at 0
    # and becomes (1 - momentum) x the batch mean of the images; a horizontal flip
    # does not change a channel mean, so the batch mean is the train split's mean.
    from keras_emlnet.data import iter_eval_samples

    spec = dataclasses.replace(testing.tiny_backbone_spec("tiny"), name="bntiny", constructor=_input_batchnorm_backbone,
                               preprocessing="none", taps=(testing.tiny_backbone_spec("tiny").taps[-1],))
    config = dataclasses.replace(CONFIG, batch_size=4, max_steps=1)
    result = encoder_stage.train_encoder(spec, "salicon", str(salicon_dir), config, str(tmp_path / "run"))
    images = np.stack([s.image_model for s in iter_eval_samples("salicon", str(salicon_dir), "train",
                                                                 input_size=config.input_size)])
    batch_mean = images.reshape(-1, 3).mean(axis=0)
    bn = [layer for layer in result.model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    assert {layer.momentum for layer in bn} == {encoder_stage.BATCHNORM_MOMENTUM} == {0.9}  # every BN layer
    bn = [layer for layer in bn if layer.name == "bntiny_input_bn"]
    np.testing.assert_allclose(bn[0].moving_mean.numpy(), 0.1 * batch_mean, rtol=1e-4)
