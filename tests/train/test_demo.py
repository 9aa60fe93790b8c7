"""The demo pipeline (train/demo_pipeline.py, demo_stages.py, demo_server.py, demo.py).

The default suite runs the whole pipeline once (module fixture, ~20-45 s) over
two tiny encoders at 32x48 with one step per training stage: every stage's
library call, the files it leaves, the served model being the trained one,
and the server being stopped (also when scoring fails). The slow test runs
`python -m train.demo` with the real nasnet and densenet161 at a small input
size, one step each.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import keras_emlnet

from train import demo_pipeline, demo_stages

TINY_INPUT = (32, 48)


def _tiny_config(out):
    from keras_emlnet.testing import tiny_backbone_spec

    return demo_pipeline.DemoConfig(
        out=str(out),
        backbones=(tiny_backbone_spec("tiny_a", seed=0), tiny_backbone_spec("tiny_b", seed=1)),
        num_images=8, image_size=(48, 64), input_size=TINY_INPUT, batch_size=2,
        encoder_steps=1, decoder_steps=1, client_images=2, server_start_timeout_s=120,
    )


def _pid_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """(DemoResult, {"pid": server pid, "grpc_port": ...}) of one tiny demo run."""
    servers = {}

    def remember(server):
        servers.update(pid=server.pid, grpc_port=server.grpc_port, alive=_pid_running(server.pid))

    out = tmp_path_factory.mktemp("demo") / "out"
    result = demo_pipeline.run_demo(_tiny_config(out), on_server_started=remember)
    return result, servers


def test_every_stage_ran_and_is_recorded(demo_run):
    result, _ = demo_run
    assert list(result.seconds) == ["data", "encoders", "decoder", "evaluate", "export", "serve"]
    with open(os.path.join(result.out, "config.json")) as f:
        record = json.load(f)
    assert record["status"] == "ok"
    assert record["config"]["backbones"] == ["tiny_a", "tiny_b"]
    assert record["config"]["input_size"] == list(TINY_INPUT)
    assert record["seconds"] == result.seconds
    # Each stage's own outputs, in the one folder.
    assert result.paths["encoders"] == [
        os.path.join(result.out, "runs", name, "encoder.keras") for name in ("tiny_a", "tiny_b")
    ]
    for path in [*result.paths["encoders"], result.paths["emlnet"]]:
        assert os.path.isfile(path)
    assert os.path.isfile(os.path.join(result.paths["export"], "saved_model.pb"))
    assert result.paths["export"] == os.path.join(result.out, "exports", "emlnet", "1")
    for stage_dir in ("tiny_a", "tiny_b", "emlnet"):
        with open(os.path.join(result.out, "runs", stage_dir, "config.json")) as f:
            assert json.load(f)["train"]["max_steps"] == 1


def test_decoder_trained_over_both_demo_encoders(demo_run):
    result, _ = demo_run
    with open(os.path.join(result.out, "runs", "emlnet", "config.json")) as f:
        run = json.load(f)["run"]
    assert run["encoders"] == result.paths["encoders"]
    assert run["dataset"] == "salicon"


def test_evaluation_scores_the_val_split_beside_the_center_bias(demo_run):
    from keras_emlnet import metrics
    from keras_emlnet.data import iter_eval_samples
    from keras_emlnet.evaluation.baselines import center_bias_map

    result, _ = demo_run
    rows = {entry["row"]: entry for entry in result.summary}
    assert list(rows) == ["EML-NET (demo)", "center bias"]
    samples = list(iter_eval_samples("salicon", result.paths["data"], "val", input_size=TINY_INPUT))
    assert rows["center bias"]["images"] == len(samples) == 2
    # The center-bias row, recomputed here from the metrics and the val ground truth.
    expected_nss = np.mean([metrics.nss(center_bias_map(s.fixation_original.shape), s.fixation_original)
                            for s in samples])
    expected_cc = np.mean([metrics.cc(center_bias_map(s.density_original.shape), s.density_original)
                           for s in samples])
    assert rows["center bias"]["nss"] == pytest.approx(expected_nss, rel=1e-9)
    assert rows["center bias"]["cc"] == pytest.approx(expected_cc, rel=1e-9)
    assert all(np.isfinite(rows["EML-NET (demo)"][k]) for k in ("nss", "cc", "kld", "sim"))
    assert "EML-NET (demo)" in result.table and "center bias" in result.table
    with open(os.path.join(result.paths["eval"], "results.json")) as f:
        assert [r["row"] for r in json.load(f)["rows"]] == list(rows)
    with open(os.path.join(result.paths["eval"], "config.json")) as f:
        assert json.load(f)["rows"] == list(rows)  # the record train.evaluate writes (same function)


def test_server_served_the_trained_model_and_was_stopped(demo_run):
    result, server = demo_run
    assert server["alive"] and not _pid_running(server["pid"])
    model = keras_emlnet.load_model(result.paths["emlnet"])
    assert len(result.scored) == 2
    for image_path, (map_png, overlay_png) in result.scored.items():
        assert os.path.dirname(image_path).endswith(os.path.join("images", "test"))
        image = np.asarray(Image.open(image_path).convert("RGB"))
        served = np.asarray(Image.open(map_png), dtype=np.float64)
        assert served.shape == image.shape[:2]
        assert np.asarray(Image.open(overlay_png)).shape == image.shape
        expected = model.predict_map(image)
        expected = 255.0 * (expected - expected.min()) / (expected.max() - expected.min())
        # 8-bit rounding, and the server decodes the JPEG with TF, the test with PIL.
        assert np.abs(served - expected).mean() < 2.0


def test_server_is_stopped_when_scoring_fails(demo_run, tmp_path, monkeypatch):
    from serving.client import client

    result, _ = demo_run
    seen = {}

    def failing_client(config):
        raise ConnectionError("client failed on purpose")

    monkeypatch.setattr(client, "run_client", failing_client)
    config = _tiny_config(tmp_path / "unused")
    images = demo_stages.pick_test_images(result.paths["data"], 1)
    with pytest.raises(ConnectionError, match="on purpose"):
        demo_stages.serve_and_score(
            config, os.path.dirname(result.paths["export"]), images, str(tmp_path / "overlays"),
            str(tmp_path / "server.log"), on_server_started=lambda s: seen.update(pid=s.pid, up=_pid_running(s.pid)),
        )
    assert seen["up"] and not _pid_running(seen["pid"])


def test_a_failed_stage_is_recorded_before_it_is_raised(tmp_path, monkeypatch):
    def broken_generator(config, data_dir):
        raise OSError("disk full, on purpose")

    monkeypatch.setattr(demo_stages, "generate_data", broken_generator)
    with pytest.raises(OSError, match="on purpose"):
        demo_pipeline.run_demo(_tiny_config(tmp_path / "out"))
    with open(tmp_path / "out" / "config.json") as f:
        record = json.load(f)
    assert record["status"] == "failed"
    assert record["failed_stage"] == "data"
    assert "disk full" in record["error"]


def test_output_dir_replaces_a_previous_demo_but_never_other_folders(tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="not a previous demo"):
        demo_pipeline.prepare_output_dir(other)
    assert (other / "thesis.tex").read_text() == "precious"

    previous = tmp_path / "demo"
    previous.mkdir()
    (previous / "config.json").write_text(json.dumps({"demo": "keras-emlnet end to end"}))
    (previous / "stale.txt").write_text("old run")
    assert demo_pipeline.prepare_output_dir(previous) == str(previous)
    assert os.listdir(previous) == []


@pytest.mark.parametrize("field, value", [("num_images", 3), ("encoder_steps", 0), ("backbones", ())])
def test_config_rejects_bad_settings(field, value):
    with pytest.raises(ValueError, match=field):
        demo_pipeline.DemoConfig(**{field: value})


def test_cli_flags_make_the_config_and_bad_sizes_are_usage_errors():
    from absl import app, flags

    from train import demo

    values = flags.FlagValues()
    demo.define_flags(values)
    values(["train.demo", "--out=/tmp/d", "--input_size=64x96", "--image_size=96X128", "--backbones=nasnet",
            "--encoder_steps=2", "--num_images=8"])
    assert demo.config_from_flags(values) == demo_pipeline.DemoConfig(
        out="/tmp/d", backbones=("nasnet",), num_images=8, image_size=(96, 128), input_size=(64, 96),
        encoder_steps=2)
    values.unparse_flags()
    values(["train.demo", "--input_size=64by96"])
    with pytest.raises(app.UsageError, match="--input_size must be HxW"):
        demo.config_from_flags(values)


@pytest.mark.slow
def test_cli_runs_the_real_backbones_at_a_small_size(tmp_path):
    """`python -m train.demo` with nasnet + densenet161 at 64x96, one step each (~6-10 min on 2 cores).

    (At 32x32 the from-scratch DenseNet-161 turns to NaN after one step: its last blocks see 1x1 maps,
    so batch norm over a batch of 2 is degenerate.)
    """
    out = tmp_path / "demo"
    completed = subprocess.run(
        [sys.executable, "-m", "train.demo", f"--out={out}", "--input_size=64x96", "--image_size=96x128",
         "--num_images=8", "--batch_size=2", "--encoder_steps=1", "--decoder_steps=1", "--client_images=1"],
        capture_output=True, text=True, timeout=1800,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"All outputs are in {out}" in completed.stdout
    assert "center bias" in completed.stdout
    with open(out / "config.json") as f:
        record = json.load(f)
    assert record["status"] == "ok" and record["config"]["backbones"] == ["nasnet", "densenet161"]
    assert len(record["scored"]) == 1
