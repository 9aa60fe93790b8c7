import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_emlnet.models.emlnet import EMLNet, build_emlnet
from keras_emlnet.testing import tiny_encoder
from keras_emlnet.training import decoder_stage
from keras_emlnet.training.config import ConfigMismatchError
from tests.train import killable_cli

INPUT_SIZE = (32, 48)
SMOKE = dataclasses.replace(
    decoder_stage.DECODER_RECIPE, epochs=2, batch_size=2, lr_decay_epochs=(1,), input_size=INPUT_SIZE
)


@pytest.fixture(scope="module")
def encoder_paths(tmp_path_factory):
    """Three trained-encoder files (tiny backbones), as train.encoder leaves them."""
    folder = tmp_path_factory.mktemp("encoders")
    paths = []
    for seed, prefix in enumerate(("tiny_a", "tiny_b", "tiny_c")):
        path = str(folder / f"{prefix}.keras")
        tiny_encoder(prefix, INPUT_SIZE, seed=seed).save(path)
        paths.append(path)
    return paths


def test_trains_only_the_decoder_and_saves_the_inference_model(encoder_paths, generated_datasets, tmp_path):
    workdir = tmp_path / "run"
    result = decoder_stage.train_decoder(
        encoder_paths[:2], "salicon", generated_datasets["salicon"], SMOKE, workdir, output_mode="probability",
        blur_sigma=1.5,
    )
    assert result.final_model_path == str(workdir / "emlnet.keras")
    assert len(result.history["loss"]) == 2
    model = keras.saving.load_model(result.final_model_path)
    assert isinstance(model, EMLNet)
    assert (model.input_size, model.resize_mode, model.output_mode, model.blur_sigma) == (
        INPUT_SIZE, "resize", "probability", 1.5
    )
    # the extractor holds exactly the encoders' weights (frozen) ...
    encoders = decoder_stage.load_encoders(encoder_paths[:2])
    for encoder in encoders:
        prefix = encoder.name.removesuffix("_encoder")
        features = model.extractor.get_layer(f"{prefix}_features")
        for weight in features.weights:
            original = encoder.get_layer(weight.path.split("/")[0]).weights
            match = [w for w in original if w.path == weight.path]
            np.testing.assert_array_equal(weight.numpy(), match[0].numpy(), err_msg=weight.path)
    # ... while the decoder moved away from its seeded initialisation
    initial = build_emlnet(encoders, seed=SMOKE.seed).decoder.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(model.decoder.get_weights(), initial))
    saliency = model.predict_map(np.zeros((50, 70, 3), np.uint8))
    assert saliency.shape == (50, 70) and saliency.sum() == pytest.approx(1.0, rel=1e-5)

    config = json.loads((workdir / "config.json").read_text())
    assert config["run"]["encoders"] == [os.path.abspath(p) for p in encoder_paths[:2]]
    assert config["train"]["batch_size"] == 2 and config["final_model"] == "emlnet.keras"
    assert (workdir / "logs").is_dir() and (workdir / "checkpoints" / "last.keras").is_file()


def test_mixed_precision_runs_the_extractor_in_bfloat16(encoder_paths, generated_datasets, tmp_path, monkeypatch):
    config = dataclasses.replace(SMOKE, epochs=1, max_steps=1, validation_steps=1, mixed_precision="bfloat16")
    loaded = []
    load_model = keras.saving.load_model
    monkeypatch.setattr(keras.saving, "load_model", lambda path, **kw: loaded.append(str(path)) or load_model(path, **kw))
    result = decoder_stage.train_decoder(
        encoder_paths[:2], "salicon", generated_datasets["salicon"], config, tmp_path / "run"
    )
    # each encoder file is loaded once (loading NASNet takes ~30 s)
    assert sorted(p for p in loaded if p in encoder_paths) == sorted(encoder_paths[:2])
    conv = result.model.extractor.get_layer("tiny_a_features").get_layer("tiny_a_conv1")
    assert conv.compute_dtype == "bfloat16"
    saved = keras.saving.load_model(result.final_model_path)
    assert saved.extractor.get_layer("tiny_a_features").get_layer("tiny_a_conv1").compute_dtype == "float32"


def test_bad_encoder_files_and_sizes_are_named(encoder_paths, generated_datasets, tmp_path):
    data = generated_datasets["salicon"]
    missing = str(tmp_path / "missing.keras")
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        decoder_stage.train_decoder([encoder_paths[0], missing], "salicon", data, SMOKE, tmp_path / "a")
    not_a_model = tmp_path / "broken.keras"
    not_a_model.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.keras"):
        decoder_stage.train_decoder([str(not_a_model)], "salicon", data, SMOKE, tmp_path / "b")
    other_size = dataclasses.replace(SMOKE, input_size=(64, 96))
    with pytest.raises(ValueError, match="input_size"):
        decoder_stage.train_decoder(encoder_paths[:1], "salicon", data, other_size, tmp_path / "c")


def test_loaded_encoders_carry_their_prefix_and_input_size(encoder_paths, tmp_path):
    encoders = decoder_stage.load_encoders(encoder_paths, input_size=INPUT_SIZE)
    assert [(encoder.tap_prefix, encoder.input_size) for encoder in encoders] == [
        ("tiny_a", INPUT_SIZE), ("tiny_b", INPUT_SIZE), ("tiny_c", INPUT_SIZE)]
    other = str(tmp_path / "tiny_d.keras")
    tiny_encoder("tiny_d", (40, 56)).save(other)
    assert decoder_stage.load_encoders([other])[0].input_size == (40, 56)
    with pytest.raises(ValueError, match=r"tiny_d\.keras': \(40, 56\)\}.*input_size \(32, 48\)"):
        decoder_stage.load_encoders([encoder_paths[0], other], input_size=INPUT_SIZE)
    not_a_model = tmp_path / "broken.keras"
    not_a_model.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.keras"):
        decoder_stage.load_encoders([str(not_a_model)])




def _cli(args, kill_at_batch=0):
    return killable_cli.run_cli("train.decoder", args, kill_at_batch=kill_at_batch)


def test_cli_with_three_encoders_is_killed_and_resumes(encoder_paths, generated_datasets, tmp_path):
    workdir = tmp_path / "emlnet"
    args = [
        f"--encoders={','.join(encoder_paths)}",
        f"--data_dir={generated_datasets['salicon']}",
        "--dataset=salicon",
        f"--workdir={workdir}",
        "--batch_size=2",
        "--epochs=2",
        "--lr_decay_epochs=1",
        "--input_size=32x48",
        "--output_mode=log_density",
    ]
    killed = _cli(args, kill_at_batch=3)  # 4 train images, 2 batches per epoch: dies in epoch 1
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (workdir / "emlnet.keras").exists()
    assert json.loads((workdir / "backup" / "state.json").read_text())["epoch"] == 1

    resumed = _cli(args)  # the same command
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from epoch 1" in resumed.stderr
    config = json.loads((workdir / "config.json").read_text())
    assert config["runtime"]["resumed_from_epoch"] == 1
    assert config["train"]["batch_size"] == 2 and config["train"]["input_size"] == [32, 48]
    assert config["train"]["learning_rate"] == decoder_stage.DECODER_RECIPE.learning_rate
    with open(workdir / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    np.testing.assert_allclose([float(row["learning_rate"]) for row in rows], [0.01, 0.001], rtol=1e-6)

    model = keras.saving.load_model(workdir / "emlnet.keras")
    assert model.output_mode == "log_density"
    # unset --blur_sigma: the paper's blur (5 px at 480x640) scaled to the 32-row model
    assert model.blur_sigma == pytest.approx(5.0 * 32 / 480) and config["run"]["blur_sigma"] == model.blur_sigma
    prefixes = [name.split("_tap_")[0] for name in model.extractor.output]
    assert prefixes == ["tiny_a"] * 3 + ["tiny_b"] * 3 + ["tiny_c"] * 3
    assert model.decoder.count_params() == 3 * (8 + 12 + 16) + 9

    # the workdir belongs to this run: other settings are refused, not mixed in
    config = dataclasses.replace(SMOKE, lr_decay_epochs=(1,))
    with pytest.raises(ConfigMismatchError, match="output_mode"):
        decoder_stage.train_decoder(
            encoder_paths, "salicon", generated_datasets["salicon"], config, workdir, output_mode="minmax"
        )


def test_module_entry_point_requires_the_encoders(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "train.decoder", "--data_dir", str(tmp_path), "--workdir", str(tmp_path / "w")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0 and "--encoders" in done.stderr
