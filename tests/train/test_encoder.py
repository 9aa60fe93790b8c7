"""`python -m train.encoder` end to end: killed with SIGKILL, rerun, resumed.

The CLI runs in a subprocess over generated SALICON data. For speed its
backbone is the tiny test spec, added to the registry by a wrapper script
(the public registry has no test entry); the wrapper can also SIGKILL the
process after a given number of trained batches. A slow test runs the
unmodified module with `resnet50`.
"""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from absl import app, flags

import keras_emlnet
from keras_emlnet import testing
from keras_emlnet.data import generate_dataset
from keras_emlnet.models import backbones
from tests.train import killable_cli
from train import encoder as encoder_cli

# The tiny test backbone, registered in the CLI's process.
TINY_SETUP = """
from keras_emlnet import testing
from keras_emlnet.models import backbones
backbones.BACKBONES["tiny"] = testing.tiny_backbone_spec("tiny")
"""


@pytest.fixture(scope="module")
def salicon_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("salicon")
    generate_dataset("salicon", str(root), 8, seed=0, image_size=(48, 64))  # 4 train, 2 val
    return root


def run_cli(args, kill_at_batch=0):
    return killable_cli.run_cli("train.encoder", args, kill_at_batch=kill_at_batch, setup=TINY_SETUP)


def test_killed_run_resumes_with_the_same_command(salicon_dir, tmp_path):
    workdir = tmp_path / "run"
    args = ["--backbone", "tiny", "--dataset", "salicon", "--data_dir", str(salicon_dir), "--workdir", str(workdir),
            "--input_size", "32x48", "--batch_size", "2", "--epochs", "2", "--lr_decay_epochs", "1"]
    killed = run_cli(args, kill_at_batch=3)  # 2 batches per epoch: dies in epoch 1
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (workdir / "encoder.keras").exists()
    assert json.loads((workdir / "backup" / "state.json").read_text())["epoch"] == 1

    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from epoch 1" in resumed.stderr
    # Not a terminal: --verbose auto is Keras's one line per epoch (no animated bar), shown one way only.
    assert re.search(r"^2/2 - \d+s - .*loss: [\d.]+ .*val_loss: [\d.]+", resumed.stdout, re.M), resumed.stdout
    assert "\r" not in resumed.stdout and "\b" not in resumed.stdout
    assert "epoch 1: " not in resumed.stderr  # no EpochLogger line beside Keras's
    recorded = json.loads((workdir / "config.json").read_text())
    assert recorded["runtime"]["resumed_from_epoch"] == 1 and recorded["runtime"]["resumed_from_step"] == 2
    assert recorded["train"]["input_size"] == [32, 48] and recorded["train"]["lr_decay_epochs"] == [1]
    assert recorded["train"]["batch_size"] == 2 and recorded["run"]["backbone"] == "tiny"
    with open(workdir / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    np.testing.assert_allclose([float(row["learning_rate"]) for row in rows], [0.01, 0.001], rtol=1e-6)
    assert json.loads((workdir / "backup" / "state.json").read_text())["step"] == 4
    assert os.listdir(workdir / "logs")  # TensorBoard

    encoder = keras_emlnet.load_model(workdir / "encoder.keras")
    assert encoder.name == "tiny_encoder" and encoder.output.shape == (None, 32, 48, 1)
    maps = encoder.predict(np.zeros((1, 32, 48, 3), "float32"), verbose=0)
    assert np.isfinite(maps).all()


@pytest.fixture
def parsed_flags():
    """Defines the CLI's flags in the global FLAGS (what main reads) and parses; removes them after."""
    before = set(flags.FLAGS)
    encoder_cli.define_flags()

    def parse(*args):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["train.encoder", *args])

    yield parse
    flags.FLAGS.unparse_flags()
    for name in set(flags.FLAGS) - before:
        delattr(flags.FLAGS, name)


def test_unknown_backbone_lists_the_registry(parsed_flags, tmp_path):
    parsed_flags("--backbone", "vgg16", "--data_dir", str(tmp_path), "--workdir", str(tmp_path / "run"))
    with pytest.raises(app.UsageError, match=r"unknown backbone 'vgg16'; registered: \['densenet161', 'nasnet', 'resnet50'\]"):
        encoder_cli.main(["train.encoder"])


def test_bad_flag_values_are_usage_errors(parsed_flags, tmp_path):
    parsed_flags("--backbone", "resnet50", "--data_dir", str(tmp_path), "--workdir", str(tmp_path), "--input_size", "480by640")
    with pytest.raises(app.UsageError, match="input_size"):
        encoder_cli.main(["train.encoder"])


def test_skip_bad_then_rerun_with_other_settings(parsed_flags, salicon_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(backbones.BACKBONES, "tiny", testing.tiny_backbone_spec("tiny"))
    data_dir = tmp_path / "salicon"
    shutil.copytree(salicon_dir, data_dir)
    corrupt = sorted((data_dir / "images" / "val").iterdir())[0]
    corrupt.write_bytes(b"not a jpeg")  # validation meets it at the end of the epoch
    workdir = tmp_path / "run"
    common = ["--backbone", "tiny", "--data_dir", str(data_dir), "--workdir", str(workdir), "--skip_bad",
              "--input_size", "32x48", "--batch_size", "2", "--epochs", "1", "--max_steps", "1"]
    parsed_flags(*common)
    encoder_cli.main(["train.encoder"])
    assert (workdir / "encoder.keras").exists()
    assert list(json.loads((workdir / "bad_samples.json").read_text())) == [str(corrupt)]

    parsed_flags(*common, "--learning_rate", "0.1")
    with pytest.raises(app.UsageError, match=r"train\.learning_rate: recorded 0\.01, now 0\.1"):
        encoder_cli.main(["train.encoder"])


@pytest.mark.slow
def test_resnet50_smoke_run_through_the_module(salicon_dir, tmp_path):
    workdir = tmp_path / "resnet50"
    args = ["--backbone", "resnet50", "--data_dir", str(salicon_dir), "--workdir", str(workdir),
            "--input_size", "64x64", "--batch_size", "2", "--epochs", "1", "--max_steps", "1",
            "--mixed_precision", "bfloat16", "--weights", "none"]  # offline: no ImageNet file
    result = subprocess.run([sys.executable, "-m", "train.encoder", *args], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = json.loads((workdir / "config.json").read_text())
    assert recorded["train"]["mixed_precision"] == "bfloat16" and recorded["run"]["backbone"] == "resnet50"
    encoder = keras_emlnet.load_model(workdir / "encoder.keras")
    assert encoder.get_layer("resnet50_tap_final").dtype_policy.name == "float32"
    assert encoder.output.shape == (None, 64, 64, 1)
