"""serving.beam_score on Beam's DirectRunner: the files serving.batch_score writes, dead letters reported.

The reference is serving.batch_score's library (`score_collection`) on the same
model and images; the CLI runs in multi-processing mode with two workers, as a
distributed runner would (elements pickled between processes, the model loaded
per worker).
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("apache_beam")  # the `beam` extra (make test installs it; test_package checks)

from keras_emlnet.testing import tiny_emlnet
from serving.batch.scoring import ScoreConfig, score_collection
from serving.beam.pipeline import BeamScoreConfig, run
from tests.paths import REPO_ROOT
from tests.serving import helpers

IMAGE_SIZES = {"a": (40, 60), "b": (50, 30), "sub/c": (64, 96), "e": (33, 47)}
UNREADABLE = {"garbage.jpg", "truncated.jpg"}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Four readable images (JPEG and PNG, in a subfolder too), a garbage file and a truncated JPEG."""
    return helpers.write_image_collection(tmp_path_factory.mktemp("images"), IMAGE_SIZES, seed=5)


@pytest.fixture(scope="module")
def keras_path(tmp_path_factory):
    """"probability" maps (re-normalised at the original size) and "pad_to_4_3" geometry."""
    path = str(tmp_path_factory.mktemp("model") / "emlnet.keras")
    tiny_emlnet((32, 48), output_mode="probability", resize_mode="pad_to_4_3", seed=3).save(path)
    return path


@pytest.fixture(scope="module")
def reference(keras_path, images, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("batch_score_out"))
    summary = score_collection(ScoreConfig(model=keras_path, images=images, out=out, format="both",
                                           overlays=True, batch_size=4))
    return out, summary


@pytest.fixture(scope="module")
def beam_cli_run(keras_path, images, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("beam_out"))
    command = [sys.executable, "-m", "serving.beam_score", f"--model={keras_path}",
               f"--images={images}", f"--out={out}", "--format=both", "--overlays", "--batch_size=2",
               "--runner=DirectRunner", "--direct_running_mode=multi_processing",
               "--direct_num_workers=2"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return out, result


def _read_json(out, name):
    with open(os.path.join(out, name)) as f:
        return json.load(f)


def _assert_same_maps(out, reference_out, names, *, overlays):
    for name in names:
        maps = np.load(os.path.join(out, name + ".npy"))
        expected = np.load(os.path.join(reference_out, name + ".npy"))
        assert maps.shape == expected.shape == IMAGE_SIZES[name] and maps.dtype == np.float32
        # probability maps sum to 1 over ~2,000 px: 1e-9 is float32 noise between batch sizes
        np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-9, err_msg=name)
        png = np.asarray(Image.open(os.path.join(out, name + ".png")))
        expected_png = np.asarray(Image.open(os.path.join(reference_out, name + ".png")))
        assert np.abs(png.astype(int) - expected_png).max() <= 1, name  # 8-bit rounding of equal floats
        if overlays:
            picture = np.asarray(Image.open(os.path.join(out, name + "_overlay.jpg")))
            expected_picture = np.asarray(Image.open(os.path.join(reference_out, name + "_overlay.jpg")))
            assert picture.shape == expected_picture.shape == IMAGE_SIZES[name] + (3,)
            assert np.abs(picture.astype(int) - expected_picture).mean() < 0.5, name


def test_multi_process_run_writes_batch_score_s_maps(beam_cli_run, reference):
    out, _ = beam_cli_run
    _assert_same_maps(out, reference[0], IMAGE_SIZES, overlays=True)
    written = {os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs}
    expected = {os.path.relpath(os.path.join(d, f), reference[0]) for d, _, fs in os.walk(reference[0]) for f in fs}
    assert written == expected | {"beam_score_plan.jsonl"}  # + the jobs the workers read
    assert not [n for n in written if ".tmp-" in n]


def test_unreadable_images_land_in_the_dead_letter_report(beam_cli_run, reference, keras_path):
    out, result = beam_cli_run
    summary = _read_json(out, "batch_score_summary.json")
    assert summary["interrupted"] is False and summary["runner"] == "DirectRunner"
    assert summary["scored"] == len(IMAGE_SIZES) and summary["images"] == len(IMAGE_SIZES) + 2
    assert summary["failed_count"] == len(UNREADABLE)
    failed = {os.path.basename(f["source"]): f["error"] for f in summary["failed"]}
    expected = {os.path.basename(f["source"]): f["error"] for f in reference[1]["failed"]}
    assert set(failed) == UNREADABLE and failed == expected  # batch_score's reasons, word for word
    assert "Unknown image file format" in failed["garbage.jpg"]
    assert "garbage.jpg" in result.stderr  # logged, not only in the file
    config = _read_json(out, "batch_score_config.json")
    assert config["model"] == keras_path and config["model_kind"] == "keras"
    assert config["resize_mode"] == "pad_to_4_3" and config["output_mode"] == "probability"
    assert config["pipeline_options"]["direct_num_workers"] == 2
    assert config["format"] == "both" and config["batch_size"] == 2


def test_rerun_skips_finished_images(beam_cli_run, keras_path, images):
    out, _ = beam_cli_run
    before = {name: os.stat(os.path.join(out, name + ".npy")).st_mtime_ns for name in IMAGE_SIZES}
    os.remove(os.path.join(out, "b.png"))  # one image not finished
    summary = run(BeamScoreConfig(model=keras_path, images=images, out=out, format="both",
                                  overlays=True, batch_size=2))
    assert summary["already_done"] == len(IMAGE_SIZES) - 1 and summary["scored"] == 1
    assert summary["failed_count"] == len(UNREADABLE)  # tried again, still unreadable
    assert os.path.exists(os.path.join(out, "b.png"))
    after = {name: os.stat(os.path.join(out, name + ".npy")).st_mtime_ns for name in IMAGE_SIZES}
    assert {n for n in IMAGE_SIZES if after[n] != before[n]} == {"b"}
    # nothing left to do: an empty plan still gives a summary
    done = run(BeamScoreConfig(model=keras_path, images=os.path.join(images, "*.png"), out=out,
                               format="both", overlays=True, batch_size=2))
    assert (done["images"], done["already_done"], done["scored"], done["failed"]) == (1, 1, 0, [])


def test_saved_model_export_gives_batch_score_s_maps(serving_export, images, tmp_path):
    _, export_base = serving_export
    saved_model = os.path.join(export_base, "1")
    reference_out, beam_out = str(tmp_path / "reference"), str(tmp_path / "beam")
    score_collection(ScoreConfig(model=saved_model, images=images, out=reference_out, format="both"))
    summary = run(BeamScoreConfig(model=saved_model, images=images, out=beam_out, format="both",
                                  batch_size=3))
    assert summary["scored"] == len(IMAGE_SIZES) and summary["failed_count"] == len(UNREADABLE)
    _assert_same_maps(beam_out, reference_out, IMAGE_SIZES, overlays=False)
    assert _read_json(beam_out, "batch_score_config.json")["model_kind"] == "saved_model"


def test_bad_settings_are_refused_before_the_pipeline_runs(keras_path, images, tmp_path):
    with pytest.raises(ValueError, match="format"):
        BeamScoreConfig(model=keras_path, images=images, out=str(tmp_path), format="jpeg")
    with pytest.raises(FileNotFoundError, match="no images"):
        run(BeamScoreConfig(model=keras_path, images=str(tmp_path / "*.jpg"), out=str(tmp_path / "o")))
    with pytest.raises(FileNotFoundError, match="neither"):
        run(BeamScoreConfig(model=str(tmp_path / "missing.keras"), images=images, out=str(tmp_path / "o")))


def test_remote_paths_read_and_write_through_beam_filesystems(keras_path, images, reference):
    """memtest:// (an in-memory object store, tests/serving/beam/memory_filesystem.py) for
    the model, the images and the outputs: nothing local but the worker's model copy."""
    from tests.serving.beam.memory_filesystem import OBJECTS, upload_tree

    upload_tree(images, "memtest://bucket/photos")
    upload_tree(os.path.dirname(keras_path), "memtest://bucket/model")
    out = "memtest://bucket/maps"
    summary = run(BeamScoreConfig(model="memtest://bucket/model/emlnet.keras",
                                  images="memtest://bucket/photos", out=out, format="npy"))
    assert summary["scored"] == len(IMAGE_SIZES) and summary["failed_count"] == len(UNREADABLE)
    assert {os.path.basename(f["source"]) for f in summary["failed"]} == UNREADABLE
    for name in IMAGE_SIZES:
        maps = np.load(io.BytesIO(OBJECTS[f"{out}/{name}.npy"][0]))
        np.testing.assert_allclose(maps, np.load(os.path.join(reference[0], name + ".npy")),
                                   rtol=1e-5, atol=1e-9, err_msg=name)
    assert json.loads(OBJECTS[f"{out}/batch_score_config.json"][0])["model_kind"] == "keras"
    # a glob over the store, and a rerun that finds every output already there
    again = run(BeamScoreConfig(model="memtest://bucket/model/emlnet.keras",
                                images="memtest://bucket/photos/**/*.jpg", out=out, format="npy"))
    assert again["already_done"] == len(IMAGE_SIZES) - 1 and again["scored"] == 0  # e is a PNG


def test_a_remote_saved_model_folder_is_copied_whole_to_the_worker(serving_export, tmp_path):
    from keras_emlnet.inference.predictor import load_predictor
    from serving.beam.files import localize_model
    from tests.serving.beam.memory_filesystem import upload_tree

    _, export_base = serving_export
    upload_tree(os.path.join(export_base, "1"), "memtest://bucket/exports/emlnet/1")
    local = localize_model("memtest://bucket/exports/emlnet/1/", str(tmp_path))
    copied = {os.path.relpath(os.path.join(d, f), local) for d, _, fs in os.walk(local) for f in fs}
    source = os.path.join(export_base, "1")
    assert copied == {os.path.relpath(os.path.join(d, f), source) for d, _, fs in os.walk(source) for f in fs}
    assert load_predictor(local).kind == "saved_model"


def test_a_failing_inference_batch_is_a_dead_letter_per_image(keras_path, images, tmp_path, monkeypatch):
    from serving.beam.model_handler import SaliencyModelHandler

    real = SaliencyModelHandler.run_inference

    def run_inference(self, batch, model, inference_args=None):
        if any(tuple(example.original_size) == IMAGE_SIZES["b"] for example in batch):
            raise ValueError("device lost")
        return real(self, batch, model, inference_args)

    # in-process DirectRunner: the unpickled handler's class is this module's patched class
    monkeypatch.setattr(SaliencyModelHandler, "run_inference", run_inference)
    out = str(tmp_path / "out")
    summary = run(BeamScoreConfig(model=keras_path, images=images, out=out, format="npy", batch_size=1))
    failed = {os.path.basename(f["source"]): f["error"] for f in summary["failed"]}
    assert set(failed) == UNREADABLE | {"b.jpg"}
    assert failed["b.jpg"] == "inference failed: ValueError('device lost')"
    assert summary["scored"] == len(IMAGE_SIZES) - 1 and not os.path.exists(os.path.join(out, "b.npy"))
