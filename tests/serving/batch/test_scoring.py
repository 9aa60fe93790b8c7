"""serving.batch_score end to end on a tiny EMLNet: outputs, resume, shards, corrupt files, safety.

Reference values come from `EMLNet.predict_map` (its own geometry path), not
from the scoring pipeline under test.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_emlnet.inference.predictor import predictor_from_keras_model
from keras_emlnet.inference.visualize import map_to_uint8
from keras_emlnet.testing import tiny_emlnet
from serving.batch import scoring as batch_scoring
from serving.batch.scoring import ScoreConfig, score_collection

IMAGE_SIZES = {"a": (40, 60), "b": (50, 30), "sub/c": (64, 96), "sub/d": (33, 47), "e": (32, 48), "f": (70, 20)}
from tests.paths import REPO_ROOT
from tests.serving import helpers

REPO = REPO_ROOT


@pytest.fixture(scope="module")
def model():
    return tiny_emlnet((32, 48), output_mode="probability", resize_mode="pad_to_4_3", seed=3)


@pytest.fixture(scope="module")
def model_path(model, tmp_path_factory):
    """The resize-back-and-renormalise case: "probability" maps, "pad_to_4_3" geometry."""
    path = str(tmp_path_factory.mktemp("model") / "emlnet.keras")
    model.save(path)
    return path


@pytest.fixture(scope="module")
def saved_model(serving_export):
    """(Keras model, exports/emlnet/1): the shared tiny export ("minmax", "resize")."""
    keras_model, export_base = serving_export
    return keras_model, os.path.join(export_base, "1")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Six readable images (JPEG and PNG, several sizes), a garbage file and a truncated JPEG."""
    return helpers.write_image_collection(tmp_path_factory.mktemp("images"), IMAGE_SIZES, seed=0)


def _source(images, name):
    return os.path.join(images, name + (".png" if name == "e" else ".jpg"))


@pytest.fixture(scope="module")
def cli_run(saved_model, images, tmp_path_factory):
    """One uninterrupted CLI run on the SavedModel writing PNG, NPY and overlays."""
    out = str(tmp_path_factory.mktemp("cli_out"))
    command = [sys.executable, "-m", "serving.batch_score", f"--model={saved_model[1]}",
               f"--images={images}", f"--out={out}", "--format=both", "--overlays",
               "--batch_size=4", "--progress=0"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def _decoded(images, name):
    # decoded as the pipeline does (PIL's JPEG decoder differs by a few levels)
    return tf.io.decode_image(tf.io.read_file(_source(images, name)), channels=3).numpy()


def test_cli_writes_one_map_per_image_at_its_original_size(cli_run, saved_model, images):
    out, _ = cli_run
    keras_model = saved_model[0]
    for name, size in IMAGE_SIZES.items():
        saliency = np.load(os.path.join(out, name + ".npy"))
        assert saliency.shape == size and saliency.dtype == np.float32
        # the SavedModel's float predict_model_size sees the resized image unrounded:
        # float agreement (uint8 rounding through predict_images moved maps by up to ~1e-2)
        np.testing.assert_allclose(saliency, keras_model.predict_map(_decoded(images, name)), atol=1e-5)
        assert saliency.min() == 0.0 and saliency.max() == pytest.approx(1.0)  # minmax at the original size
        png = np.asarray(Image.open(os.path.join(out, name + ".png")))
        assert png.dtype == np.uint8
        np.testing.assert_array_equal(png, map_to_uint8(saliency))
        overlay = Image.open(os.path.join(out, name + "_overlay.jpg"))
        assert overlay.size == (size[1], size[0]) and overlay.mode == "RGB"


def test_cli_reports_unreadable_images_and_records_its_config(cli_run, images, saved_model):
    out, result = cli_run
    with open(os.path.join(out, "batch_score_summary.json")) as f:
        summary = json.load(f)
    assert summary["scored"] == len(IMAGE_SIZES)
    assert summary["interrupted"] is False
    failed = {os.path.basename(f["source"]): f["error"] for f in summary["failed"]}
    assert set(failed) == {"garbage.jpg", "truncated.jpg"}
    assert "Unknown image file format" in failed["garbage.jpg"]
    assert "garbage.jpg" in result.stderr  # logged, not only in the file
    with open(os.path.join(out, "batch_score_config.json")) as f:
        config = json.load(f)
    assert config["model"] == saved_model[1] and config["model_kind"] == "saved_model"
    assert config["format"] == "both"
    assert config["resize_mode"] == "resize" and config["output_mode"] == "minmax"
    assert not [n for n in os.listdir(out) if n.startswith(".tmp-")]


def test_saved_model_scores_equal_the_keras_files_scores(cli_run, saved_model, images, tmp_path):
    keras_model, _ = saved_model
    keras_path = str(tmp_path / "emlnet.keras")
    keras_model.save(keras_path)
    out = str(tmp_path / "keras_out")
    summary = score_collection(ScoreConfig(model=keras_path, images=images, out=out, format="npy", batch_size=4))
    assert summary["scored"] == len(IMAGE_SIZES)
    saved_model_out, _ = cli_run
    for name in IMAGE_SIZES:
        from_keras = np.load(os.path.join(out, name + ".npy"))
        from_saved_model = np.load(os.path.join(saved_model_out, name + ".npy"))
        # minmax maps span [0, 1]: 1e-5 is float noise, three orders below the 8-bit rounding's error
        np.testing.assert_allclose(from_saved_model, from_keras, atol=1e-5, err_msg=name)


def test_interrupted_run_resumes_and_matches_an_uninterrupted_one(model, images, tmp_path):
    out = str(tmp_path / "out")
    # batch 1: at most MAX_BATCHES_IN_FLIGHT images are queued for writing when Ctrl-C comes
    config = ScoreConfig(model="<in memory>", images=images, out=out, format="npy", batch_size=1,
                         writer_threads=1)
    predictor = predictor_from_keras_model(model)

    def make_progress(total):
        assert total == len(IMAGE_SIZES) + 2

        def on_progress(count):
            raise KeyboardInterrupt  # as a user's Ctrl-C after the first finished image
        return on_progress

    with pytest.raises(KeyboardInterrupt):
        score_collection(config, predictor=predictor, make_progress=make_progress)
    with open(batch_scoring.summary_path(out, 0, 1)) as f:
        interrupted = json.load(f)
    assert interrupted["interrupted"] is True
    written = [os.path.join(r, f) for r, _, fs in os.walk(out) for f in fs if f.endswith(".npy")]
    assert 1 <= len(written) <= batch_scoring.MAX_BATCHES_IN_FLIGHT + 1 < len(IMAGE_SIZES)
    # a temporary file left by a killed writer is not an output and is ignored
    (tmp_path / "out" / ".tmp-abc.npy").write_bytes(b"partial")

    summary = score_collection(config, predictor=predictor)
    assert summary["already_done"] == len(written)
    assert summary["scored"] == len(IMAGE_SIZES) - len(written)
    assert len(summary["failed"]) == 2 and summary["interrupted"] is False
    for name, size in IMAGE_SIZES.items():  # as if never interrupted: the model's own maps
        saliency = np.load(os.path.join(out, name + ".npy"))
        np.testing.assert_allclose(saliency, model.predict_map(_decoded(images, name)), rtol=1e-4, atol=1e-8)
        assert saliency.shape == size
        assert abs(float(saliency.sum()) - 1.0) < 1e-4  # probability mode survives the resize back
    again = score_collection(config, predictor=predictor)
    assert again["scored"] == 0 and again["already_done"] == len(IMAGE_SIZES)


def test_shards_score_every_image_exactly_once(model, images, tmp_path):
    out = str(tmp_path / "out")
    predictor = predictor_from_keras_model(model)
    scored, failed = [], []
    for shard in range(3):
        config = ScoreConfig(model="<in memory>", images=images, out=out, format="npy",
                             shard_index=shard, num_shards=3, batch_size=3)
        summary = score_collection(config, predictor=predictor)
        assert summary["already_done"] == 0  # no shard touched another's images
        assert os.path.exists(batch_scoring.summary_path(out, shard, 3))
        scored.append(summary["scored"])
        failed += [f["source"] for f in summary["failed"]]
    assert sum(scored) == len(IMAGE_SIZES)
    assert sorted(os.path.basename(f) for f in failed) == ["garbage.jpg", "truncated.jpg"]
    outputs = sorted(os.path.relpath(os.path.join(r, f), out) for r, _, fs in os.walk(out)
                     for f in fs if f.endswith(".npy"))
    assert outputs == sorted(n + ".npy" for n in IMAGE_SIZES)


def test_outputs_never_escape_out(model, images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # the glob climbs out of its root: rejected and reported, nothing written outside --out
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(str(outside / "x.jpg"))
    climb = os.path.relpath(str(outside), os.path.dirname(images))
    pattern = os.path.join(images, "*", "..", "..", climb, "x.jpg")  # root: images
    config = ScoreConfig(model="<in memory>", images=pattern, out=str(out), format="png")
    before = set(os.listdir(tmp_path))
    summary = score_collection(config, predictor=predictor_from_keras_model(model))
    assert summary["scored"] == 0
    assert len(summary["failed"]) == 1 and "'..'" in summary["failed"][0]["error"]
    assert set(os.listdir(tmp_path)) == before
    # a folder inside --out that links elsewhere: the image is reported, not written through it
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.symlink(str(target), str(out / "sub"))
    config = ScoreConfig(model="<in memory>", images=images, out=str(out), format="png")
    summary = score_collection(config, predictor=predictor_from_keras_model(model))
    assert not os.listdir(str(target))
    escaped = [f for f in summary["failed"] if "outside the output folder" in f["error"]]
    assert sorted(os.path.basename(f["source"]) for f in escaped) == ["c.jpg", "d.jpg"]


def test_bfloat16_scoring_is_close_to_float32(model_path, images, tmp_path):
    from keras_emlnet.inference.predictor import load_predictor

    maps = {}
    for precision in ("float32", "bfloat16"):
        out = str(tmp_path / precision)
        config = ScoreConfig(model=model_path, images=images, out=out, format="npy", precision=precision)
        summary = score_collection(config, predictor=load_predictor(model_path, precision=precision))
        assert summary["scored"] == len(IMAGE_SIZES)
        maps[precision] = np.load(os.path.join(out, "sub", "c.npy"))
    assert np.corrcoef(maps["float32"].ravel(), maps["bfloat16"].ravel())[0, 1] > 0.99
    assert not np.array_equal(maps["float32"], maps["bfloat16"])  # bfloat16 really ran


_TWO_REPLICAS = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from serving.batch.scoring import ScoreConfig, score_collection
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
config = ScoreConfig(model=sys.argv[1], images=sys.argv[2], out=sys.argv[3], format="npy", batch_size=2)
print(json.dumps(score_collection(config, strategy=strategy)))
"""


def test_two_replicas_give_the_single_device_maps(model, model_path, images, tmp_path):
    """MirroredStrategy over two logical CPUs (as over two GPUs): split, padded batches, same maps."""
    out = str(tmp_path / "out")
    result = subprocess.run([sys.executable, "-c", _TWO_REPLICAS, model_path, images, out],
                            cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["replicas"] == 2 and summary["scored"] == len(IMAGE_SIZES) and len(summary["failed"]) == 2
    for name in IMAGE_SIZES:
        np.testing.assert_allclose(np.load(os.path.join(out, name + ".npy")),
                                   model.predict_map(_decoded(images, name)), rtol=1e-4, atol=1e-8)


def test_bad_arguments_raise_clear_errors(model_path, tmp_path):
    with pytest.raises(ValueError, match="format"):
        ScoreConfig(model=model_path, images=".", out=str(tmp_path), format="jpeg")
    with pytest.raises(ValueError, match="shard_index"):
        ScoreConfig(model=model_path, images=".", out=str(tmp_path), shard_index=3, num_shards=3)
    with pytest.raises(FileNotFoundError, match="no images"):
        score_collection(ScoreConfig(model=model_path, images=str(tmp_path / "*.jpg"), out=str(tmp_path)))
