"""train.finetune / keras_emlnet.training.finetune on generated data: the paper's protocols, a decoder
run as the source, warm starts, resume after an interruption, and clear errors."""

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_emlnet.training import decoder_stage
from keras_emlnet.training import encoder_stage
from keras_emlnet.training import finetune as finetuning
from tests.paths import REPO_ROOT

REPO = REPO_ROOT
INPUT_SIZE = (24, 32)
SMOKE = dict(input_size=INPUT_SIZE, batch_size=2, epochs=1, max_steps=2)


@pytest.fixture(scope="module")
def source_run(generated_datasets, tmp_path_factory):
    """A real train.decoder workdir over one tiny encoder (the stages loop over any number),
    trained for one step on SALICON."""
    from keras_emlnet.testing import tiny_encoder

    base = tmp_path_factory.mktemp("source")
    paths = []
    for prefix, seed in (("tiny_a", 0),):
        paths.append(str(base / f"{prefix}.keras"))
        tiny_encoder(prefix, input_size=INPUT_SIZE, seed=seed).save(paths[-1])
    config = dataclasses.replace(decoder_stage.DECODER_RECIPE, **{**SMOKE, "max_steps": 1})
    decoder_stage.train_decoder(paths, "salicon", generated_datasets["salicon"], config, str(base / "emlnet"),
                                   output_mode="probability")
    return str(base / "emlnet"), paths


def _weights(path, *, trainable=False):
    model = keras.saving.load_model(path, compile=False)
    return [w.numpy() for w in model.trainable_weights] if trainable else model.get_weights()


def test_protocols_are_the_papers():
    assert finetuning.protocol("mit1003") == {
        "dataset": "mit1003", "resize_mode": "pad_to_4_3", "train_images": 903, "val_images": 100}
    assert finetuning.protocol("cat2000") == {
        "dataset": "cat2000", "resize_mode": "resize", "train_images": 1800, "val_images": 200}
    with pytest.raises(ValueError, match="mit1003"):
        finetuning.protocol("salicon")


def test_source_run_is_read_from_the_decoder_config(source_run):
    workdir, encoder_paths = source_run
    source = finetuning.read_source_run(workdir)
    assert list(source.encoder_paths) == [os.path.abspath(p) for p in encoder_paths]
    assert source.input_size == INPUT_SIZE and source.output_mode == "probability"
    assert source.emlnet_path == os.path.join(workdir, "emlnet.keras")


def test_bad_sources_raise_clear_errors(source_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        finetuning.read_source_run(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"run": {}, "train": {"input_size": [24, 32]}}))
    with pytest.raises(ValueError, match="run.encoders"):
        finetuning.read_source_run(str(tmp_path))
    wrong = dataclasses.replace(encoder_stage.ENCODER_RECIPE, input_size=(48, 64))
    with pytest.raises(ValueError, match="input_size"):
        finetuning.finetune("mit1003", source_run[0], str(tmp_path), str(tmp_path / "run"),
                            encoder_config=wrong, decoder_config=wrong)


def test_cli_fine_tunes_encoders_then_the_warm_started_decoder(source_run, generated_datasets, tmp_path):
    workdir, encoder_paths = source_run
    out = str(tmp_path / "mit")
    # A vanishing learning rate: the result must equal the source (warm starts), while
    # both stages still run their optimizer steps and write their run records.
    command = [sys.executable, "-m", "train.finetune", "--dataset=mit1003", f"--from={workdir}",
               f"--data_dir={generated_datasets['mit1003']}", f"--workdir={out}", "--batch_size=2",
               "--epochs=1", "--max_steps=2", "--learning_rate=1e-12", "--input_size=24x32"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]

    for prefix, source_path in zip(("tiny_a",), encoder_paths):
        run_dir = os.path.join(out, "encoders", prefix)
        with open(os.path.join(run_dir, "config.json")) as f:
            record = json.load(f)
        assert record["run"]["init_from"] == os.path.abspath(source_path)
        assert record["train"]["lr_decay_epochs"] == [5]  # the encoder recipe
        with open(os.path.join(run_dir, "history.csv")) as f:
            assert len(f.readlines()) == 2  # header + the epoch it ran
        # (BatchNorm statistics move in training whatever the learning rate: trainable weights only)
        tuned = _weights(os.path.join(run_dir, "encoder.keras"), trainable=True)
        for tuned_weight, original in zip(tuned, _weights(source_path, trainable=True)):
            np.testing.assert_allclose(tuned_weight, original, atol=1e-6)

    final = keras.saving.load_model(os.path.join(out, "emlnet.keras"), compile=False)
    source_model = keras.saving.load_model(os.path.join(workdir, "emlnet.keras"), compile=False)
    assert final.resize_mode == "pad_to_4_3"  # MIT1003: pad to 4:3, then resize
    assert final.output_mode == "probability" and tuple(final.input_size) == INPUT_SIZE
    assert source_model.blur_sigma is None  # the source had none: unset --blur_sigma is the paper's, not the source's
    assert final.blur_sigma == pytest.approx(5.0 * INPUT_SIZE[0] / 480)
    for tuned, original in zip(final.decoder.get_weights(), source_model.decoder.get_weights()):
        np.testing.assert_allclose(tuned, original, atol=1e-6)

    with open(os.path.join(out, "config.json")) as f:  # a decoder-run layout: usable as --from
        record = json.load(f)
    assert record["run"]["encoders"] == [os.path.join(out, "encoders", "tiny_a", "encoder.keras")]
    assert record["train"]["lr_decay_epochs"] == [3]  # the decoder recipe
    with open(os.path.join(out, "finetune.json")) as f:
        assert json.load(f)["protocol"]["train_images"] == 903
    assert finetuning.read_source_run(out).encoder_paths == tuple(record["run"]["encoders"])


class _InterruptDecoder(keras.callbacks.Callback):
    """Raises as a Ctrl-C would, at the first decoder step (after both encoder stages)."""

    def on_train_batch_end(self, batch, logs=None):
        if "emlnet" in self.model.name:
            raise KeyboardInterrupt


def test_an_interrupted_run_resumes_without_retraining_finished_stages(source_run, generated_datasets, tmp_path):
    workdir, _ = source_run
    encoder_config = dataclasses.replace(encoder_stage.ENCODER_RECIPE, **SMOKE)
    decoder_config = dataclasses.replace(decoder_stage.DECODER_RECIPE, **SMOKE)
    out = str(tmp_path / "cat")
    kwargs = dict(encoder_config=encoder_config, decoder_config=decoder_config)
    with pytest.raises(KeyboardInterrupt):
        finetuning.finetune("cat2000", workdir, generated_datasets["cat2000"], out,
                            callbacks=[_InterruptDecoder()], **kwargs)
    encoder_file = os.path.join(out, "encoders", "tiny_a", "encoder.keras")
    tuned = _weights(encoder_file)
    assert not os.path.exists(os.path.join(out, "emlnet.keras"))

    result = finetuning.finetune("cat2000", workdir, generated_datasets["cat2000"], out, **kwargs)
    for again, before in zip(_weights(encoder_file), tuned):
        np.testing.assert_array_equal(again, before)  # the finished stage was not trained again
    final = keras.saving.load_model(result.final_model_path, compile=False)
    assert final.resize_mode == "resize"  # CAT2000: plain resize
    with open(os.path.join(out, "encoders", "tiny_a", "history.csv")) as f:
        assert len(f.readlines()) == 2
