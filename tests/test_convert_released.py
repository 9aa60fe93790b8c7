"""`python -m keras_emlnet.convert_released`: the released checkpoints become one EMLNet that gives the
official map at 480x640 in a fresh process without torch, and that every part of the project takes:
serving.export → serving.server → serving.client, serving.batch_score, train.evaluate, and the decoder
stage over its encoders frozen beside another encoder."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from keras_emlnet import load_model  # noqa: E402
from keras_emlnet.models.taps import tap_layer_name  # noqa: E402
from tests.conftest import RELEASED_TEST_SIZE  # noqa: E402
from tests.models import released_reference as reference  # noqa: E402
from tests.paths import REPO_ROOT  # noqa: E402

# Loads the converted model where `import torch` fails, predicts one image, saves the map.
_PREDICT_WITHOUT_TORCH = r"""
import sys
sys.modules["torch"] = None  # any torch import now fails: the converted model must not need it
import numpy as np
from keras_emlnet import load_model
import keras_emlnet.convert_released  # the converter's modules import without torch, too
model = load_model(sys.argv[1])
np.save(sys.argv[3], model.predict_map(np.load(sys.argv[2])))
encoders = [load_model(path) for path in sys.argv[4:]]
print("ENCODERS", [(e.tap_prefix, e.backbone, e.input_size) for e in encoders])
print("MODEL", type(model).__name__, model.input_size, model.blur_sigma, model.output_mode)
"""


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "keras_emlnet.convert_released", *args], cwd=REPO_ROOT,
                          env=_env(), capture_output=True, text=True, timeout=timeout)


def test_cli_converts_to_the_official_map_at_480x640_in_a_fresh_process_without_torch(
        released_checkpoints, tmp_path):
    (imagenet, places, decoder), paths = released_checkpoints
    out = tmp_path / "emlnet_resnet50.keras"
    encoders_dir = tmp_path / "encoders"
    result = _cli(f"--imagenet={paths['imagenet']}", f"--places={paths['places']}", f"--decoder={paths['decoder']}",
                  f"--out={out}", f"--encoders_dir={encoders_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "emlnet_resnet50.keras.json").read_text())
    assert record["input_size"] == [480, 640] and record["blur_sigma"] == 5.0
    assert record["checkpoints"]["places"]["path"] == os.path.abspath(paths["places"])
    assert len(record["checkpoints"]["decoder"]["sha256"]) == 64

    # an image the BatchNorm calibration never saw (smooth shapes + noise), the released size
    rng = np.random.default_rng(11)
    rows, cols = np.mgrid[0:480, 0:640]
    image = 60 + 120 * np.exp(-((rows - 150) ** 2 + (cols - 420) ** 2) / 8000.0)[..., None] * rng.uniform(0.5, 1, 3)
    image = np.clip(image + rng.normal(0, 25, (480, 640, 3)), 0, 255).astype(np.uint8)
    np.save(tmp_path / "image.npy", image)
    encoder_files = [str(encoders_dir / f"{prefix}_encoder.keras") for prefix in ("imagenet", "places")]
    result = subprocess.run(
        [sys.executable, "-c", _PREDICT_WITHOUT_TORCH, str(out), str(tmp_path / "image.npy"),
         str(tmp_path / "map.npy"), *encoder_files],
        cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MODEL EMLNet (480, 640) 5.0 minmax" in result.stdout
    assert "ENCODERS [('imagenet', 'resnet50_torch', (480, 640)), ('places', 'resnet50_torch', (480, 640))]" \
        in result.stdout

    pred, _, _ = reference.released_forward(imagenet, places, decoder, image)
    want = reference.post_process(pred)  # eval_combined.py's map before its uint8 cast
    got = np.load(tmp_path / "map.npy")
    assert got.dtype == np.float32 and got.shape == (480, 640) and got.min() == 0.0 and got.max() == 1.0
    assert np.ptp(pred) > 0.01  # the raw map has structure, not a saturated sigmoid
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_cli_bad_checkpoint_is_a_usage_error_naming_the_file(released_checkpoints, tmp_path):
    _, paths = released_checkpoints
    junk = tmp_path / "res_decoder.pth"
    junk.write_bytes(b"not a checkpoint")
    result = _cli(f"--imagenet={paths['imagenet']}", f"--places={paths['places']}", f"--decoder={junk}",
                  f"--out={tmp_path / 'm.keras'}", timeout=300)
    assert result.returncode != 0
    assert f"cannot read PyTorch checkpoint {junk}" in result.stderr
    assert not (tmp_path / "m.keras").exists()


# --- the converted model everywhere (converted at RELEASED_TEST_SIZE by the released_small fixture) ---


@pytest.fixture(scope="module")
def converted(released_small):
    return load_model(released_small[0])


def _write_images(folder, images):
    from tests.serving import helpers

    folder.mkdir()
    for k, image in enumerate(images):
        (folder / f"image{k}.png").write_bytes(helpers.png_bytes(image))
    return str(folder)


def _check_batch_scores(model, folder, out, wants):
    from serving.batch.scoring import ScoreConfig, score_collection

    summary = score_collection(ScoreConfig(model=model, images=folder, out=str(out), format="npy"))
    assert summary["scored"] == len(wants)
    for k, want in enumerate(wants):
        np.testing.assert_allclose(np.load(out / f"image{k}.npy"), want, rtol=0, atol=1e-4)


def test_batch_score_maps_equal_predict_map(converted, released_small, tmp_path):
    from tests.serving import helpers

    images = helpers.distinct_images(2, seed=41, sizes=((72, 100), (61, 90)))
    folder = _write_images(tmp_path / "images", images)
    _check_batch_scores(released_small[0], folder, tmp_path / "scored", [converted.predict_map(i) for i in images])


@pytest.mark.slow  # ~3 min on a loaded 2-core CPU: exporting and reloading 47 M weights; fast twin above
def test_exported_served_and_batch_scored_maps_equal_predict_map(converted, released_small, tmp_path):
    from serving.client import client
    from serving.export.export import ExportConfig, export_saliency_model
    from serving.server.server import ModelServer, ServerConfig
    from tests.serving import helpers

    images = helpers.distinct_images(2, seed=41, sizes=((72, 100), (61, 90)))
    wants = [converted.predict_map(image) for image in images]
    base = tmp_path / "exports"
    export_saliency_model(converted, ExportConfig(model=released_small[0], export_base=str(base), version=1,
                                                  model_name="released"))
    config = ServerConfig(model_base_path=str(base), model_name="released", grpc_port=0, rest_port=0,
                          file_system_poll_wait_seconds=0)
    with ModelServer(config) as server:
        maps = client.predict_grpc(f"127.0.0.1:{server.grpc_port}", "released",
                                   [helpers.png_bytes(image) for image in images])
    for got, want in zip(maps, wants):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    _check_batch_scores(str(base / "1"), _write_images(tmp_path / "images", images), tmp_path / "scored", wants)


def test_train_evaluate_scores_it(converted, released_small, generated_datasets, tmp_path):
    from PIL import Image

    from keras_emlnet import metrics
    from keras_emlnet.data import iter_eval_samples
    from keras_emlnet.evaluation.columns import METRIC_KEYS
    from keras_emlnet.evaluation.evaluate import EvalConfig, evaluate_and_write
    from keras_emlnet.inference.predictor import load_predictor

    data = generated_datasets["salicon"]
    written = evaluate_and_write(load_predictor(released_small[0]), EvalConfig("salicon", data, "val",
                                                                              model_name="released"), str(tmp_path))
    rows = [r for r in written.results.per_image if r["row"] == "released"]
    assert len(rows) == 2 and all(np.isfinite(r[key]) for r in rows for key in METRIC_KEYS)
    # its NSS is the NSS of predict_map on the original image
    for row, sample in zip(rows, iter_eval_samples("salicon", data, "val", input_size=RELEASED_TEST_SIZE)):
        image = np.asarray(Image.open(sample.image_path).convert("RGB"))
        want = metrics.nss(converted.predict_map(image), sample.fixation_original)
        assert row["nss"] == pytest.approx(want, abs=0.02)
    assert os.path.exists(written.paths["json"])


def test_its_encoders_freeze_beside_another_and_train_a_new_decoder(released_small, generated_datasets, tmp_path):
    from keras_emlnet.models.decoder import build_decoder
    from keras_emlnet.models.extractor import tap_shapes
    from keras_emlnet.testing import tiny_encoder
    from keras_emlnet.training import decoder_stage

    tiny = str(tmp_path / "tiny.keras")
    tiny_encoder("tiny_a", RELEASED_TEST_SIZE, seed=3).save(tiny)
    encoder_paths = [released_small[1]["imagenet"], released_small[1]["places"], tiny]
    config = dataclasses.replace(decoder_stage.DECODER_RECIPE, epochs=1, batch_size=2, lr_decay_epochs=(),
                                 input_size=RELEASED_TEST_SIZE, max_steps=2)
    result = decoder_stage.train_decoder(encoder_paths, "salicon", generated_datasets["salicon"], config,
                                         tmp_path / "run")
    assert np.isfinite(result.history["loss"]).all()
    model = load_model(result.final_model_path)
    taps = list(model.extractor.output)
    assert taps[:5] == [tap_layer_name("imagenet", f"output{i}") for i in range(5)]
    assert taps[5:10] == [tap_layer_name("places", f"output{i}") for i in range(5)]
    assert taps[10:] == ["tiny_a_tap_s2", "tiny_a_tap_s4", "tiny_a_tap_final"]
    # the released encoders are frozen: the extractor holds exactly their converted weights
    released_encoder = load_model(released_small[1]["places"])
    features = model.extractor.get_layer("places_features")
    originals = {w.path: w.numpy() for w in released_encoder.weights}
    assert len(features.weights) == 53 + 53 * 4 + 5 * 2 + 5 * 4  # backbone convs + BNs, readout convs + BNs
    for weight in features.weights:
        np.testing.assert_array_equal(weight.numpy(), originals[weight.path], err_msg=weight.path)
    # the new decoder (the project's, 13 taps: 10 one-channel readouts + 8 + 12 + 16 channels) was trained
    assert sum(int(np.prod(w.shape)) for w in model.decoder.trainable_weights) == 10 + 36 + 13
    initial = build_decoder(tap_shapes(model.extractor), RELEASED_TEST_SIZE, name=model.decoder.name,
                            seed=config.seed).get_weights()
    assert any(np.abs(a - b).max() > 1e-6 for a, b in zip(model.decoder.get_weights(), initial))
    saliency = model.predict_map(np.full((50, 70, 3), 128, np.uint8))
    assert saliency.shape == (50, 70) and np.isfinite(saliency).all()
