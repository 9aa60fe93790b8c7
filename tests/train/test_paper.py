"""`python -m train.paper --smoke` end to end: SIGKILLed mid-stage, rerun, finished stages skipped.

The CLI runs unmodified in a subprocess (tests/train/killable_cli.py), with the
registry's `nasnet` and `densenet161` replaced by the tiny test backbone (the
real ones take minutes to build and trace on a CPU); the stage graph, the
resume and results.md are the real ones.
"""

import json
import re
import signal

import pytest
from absl import app, flags

from keras_emlnet.training import paper
from tests.train import killable_cli
from train import paper as paper_cli

TINY_PAPER_BACKBONES = """
from keras_emlnet import testing
from keras_emlnet.models import backbones
backbones.BACKBONES["nasnet"] = testing.tiny_backbone_spec("nasnet", seed=1)
backbones.BACKBONES["densenet161"] = testing.tiny_backbone_spec("densenet161", seed=2)
"""
STAGES = ["data", "encoder_densenet161", "encoder_nasnet", "decoder_densenet161", "evaluate_densenet161",
          "decoder_nasnet", "evaluate_nasnet", "decoder_combined", "evaluate_combined"]


def run_cli(args, kill_at_batch=0):
    return killable_cli.run_cli("train.paper", args, kill_at_batch=kill_at_batch, setup=TINY_PAPER_BACKBONES)


def _record(workdir, folder):
    return json.loads((workdir / folder / "stage.json").read_text())


def test_smoke_run_killed_mid_stage_resumes_and_skips_finished_stages(tmp_path):
    workdir = tmp_path / "paper"
    args = ["--workdir", str(workdir), "--smoke"]
    # Smoke stages train 2 epochs of 1 batch: batches 1-2 encoder_densenet161, 3-4
    # encoder_nasnet, 5-6 decoder_densenet161, so the kill lands in that decoder's
    # epoch 1, after its epoch-0 backup.
    killed = run_cli(args, kill_at_batch=6)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    for folder in ("data", "encoders/densenet161", "encoders/nasnet"):
        assert (workdir / folder / "stage.json").exists(), folder
    assert not (workdir / "decoders" / "densenet161" / "stage.json").exists()
    assert json.loads((workdir / "decoders" / "densenet161" / "backup" / "state.json").read_text())["epoch"] == 1
    assert not (workdir / "results.md").exists()
    folders = {"data": "data", "encoder_densenet161": "encoders/densenet161", "encoder_nasnet": "encoders/nasnet"}
    before = {name: _record(workdir, folder) for name, folder in folders.items()}

    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name, record in before.items():
        assert f"stage {name}: finished earlier" in resumed.stderr
        assert _record(workdir, folders[name]) == record  # not rerun
    assert "stage decoder_densenet161: running" in resumed.stderr
    assert _record(workdir, "decoders/densenet161")["outputs"]["resumed_from_epoch"] == 1
    for experiment in paper.EXPERIMENTS:
        assert (workdir / "decoders" / experiment / "emlnet.keras").exists()
        assert (workdir / "eval" / experiment / "results.json").exists()

    text = (workdir / "results.md").read_text()
    assert "Smoke run" in text and "random initialisation" in text
    for experiment, label in paper.EXPERIMENT_LABELS.items():
        ours = re.search(rf"^\| {re.escape(label)} \| ours \(4 images\) \|(.*)$", text, re.M)
        assert ours, label
        values = [float(v) for v in ours.group(1).split("|")[:6]]  # NSS CC AUC sAUC KLD SIM: all scored
        assert all(v == v for v in values), (label, values)
        assert "(the paper's), minmax" in ours.group(1)  # the post-processing that produced the row
        expected = " | ".join(f"{paper.PAPER_TABLE1[experiment][key]:.3f}" for key, _ in paper.TABLE1_COLUMNS)
        assert f"| {label} | paper | {expected} |" in text
    for stage in STAGES:
        assert re.search(rf"^\| {stage} \| \d+\.\d \|", text, re.M), stage
    document = json.loads((workdir / "results.json").read_text())
    assert [record["stage"] for record in document["stages"]] == STAGES and document["smoke"] is True
    assert document["settings"]["weights"] is None  # smoke: random initialisation, said so

    again = run_cli(args)  # everything finished: only results.md is rewritten
    assert again.returncode == 0 and again.stderr.count("finished earlier") == len(STAGES)


@pytest.fixture
def parsed_flags():
    """Defines the CLI's flags in the global FLAGS (what main reads) and parses; removes them after."""
    before = set(flags.FLAGS)
    paper_cli.define_flags()

    def parse(*args):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["train.paper", *args])

    yield parse
    flags.FLAGS.unparse_flags()
    for name in set(flags.FLAGS) - before:
        delattr(flags.FLAGS, name)


@pytest.mark.parametrize("args, message", [
    ([], "--data_dir"),
    (["--data_dir", "D", "--experiments", "vgg"], "--experiments"),
])
def test_usage_errors_name_the_flag(parsed_flags, args, message, tmp_path):
    parsed_flags("--workdir", str(tmp_path / "w"), *[str(tmp_path / a) if a == "D" else a for a in args])
    with pytest.raises(app.UsageError, match=message):
        paper_cli.main(["train.paper"])
    assert not (tmp_path / "w").exists()  # refused before anything is written
