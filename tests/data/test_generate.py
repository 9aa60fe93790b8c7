"""Synthetic dataset generator: real layouts and .mat structures, determinism,
content-dependent fixations, CLI."""

import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
import scipy.ndimage
from PIL import Image

from keras_emlnet.data import generate_dataset
from keras_emlnet.data import iter_eval_samples


def _files(root):
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, names in os.walk(root) for f in names
    )


def test_salicon_real_size_and_mat_structure(tmp_path):
    config = generate_dataset("salicon", str(tmp_path), 2, seed=1)  # default 480x640
    assert config["files"] == {"train": 1, "val": 1, "test": 0}
    files = _files(str(tmp_path))
    name = next(f for f in files if f.startswith("images/train/"))[len("images/train/") : -4]
    assert name.startswith("COCO_train2014_") and len(name) == len("COCO_train2014_") + 12
    assert f"maps/train/{name}.png" in files and f"fixations/train/{name}.mat" in files
    with Image.open(tmp_path / "images" / "train" / f"{name}.jpg") as image:
        assert image.size == (640, 480) and image.mode == "RGB"
    mat = scipy.io.loadmat(tmp_path / "fixations" / "train" / f"{name}.mat")
    assert mat["image"][0] == name
    np.testing.assert_array_equal(mat["resolution"], [[480, 640]])
    gaze = mat["gaze"]
    assert gaze.shape == (16, 1)  # one struct per observer
    assert gaze.dtype.names == ("location", "timestamp", "fixations")
    for observer in gaze.ravel():
        fixations, location = observer["fixations"], observer["location"]
        assert fixations.shape[1] == 2 and location.shape[1] == 2
        assert observer["timestamp"].shape == (len(location), 1)
        assert np.all(np.diff(observer["timestamp"].ravel()) > 0)
        for xy in (fixations, location):  # 1-based (x, y) inside 640x480
            assert xy.min() >= 1 and xy[:, 0].max() <= 640 and xy[:, 1].max() <= 480


def test_mit1003_and_cat2000_layouts(generated_datasets):
    mit = _files(generated_datasets["mit1003"])
    stimuli = [f for f in mit if f.startswith("ALLSTIMULI/")]
    assert len(stimuli) == 10 and all(f.endswith(".jpeg") for f in stimuli)
    for stimulus in stimuli:
        stem = stimulus[len("ALLSTIMULI/") : -len(".jpeg")]
        assert f"ALLFIXATIONMAPS/{stem}_fixMap.jpg" in mit and f"ALLFIXATIONMAPS/{stem}_fixPts.jpg" in mit
        with Image.open(os.path.join(generated_datasets["mit1003"], stimulus)) as image:
            assert max(image.size) == 64 and min(image.size) >= 26
    cat = _files(generated_datasets["cat2000"])
    assert "trainSet/Stimuli/Action/001.jpg" in cat
    assert "trainSet/FIXATIONMAPS/Action/001.jpg" in cat
    assert "trainSet/FIXATIONLOCS/Action/001.mat" in cat
    fix_locs = scipy.io.loadmat(os.path.join(generated_datasets["cat2000"], "trainSet/FIXATIONLOCS/Action/001.mat"))
    assert fix_locs["fixLocs"].shape == (36, 64) and fix_locs["fixLocs"].any()
    # BlackWhite stimuli are one-channel JPEGs; the reader expands them to RGB
    path = os.path.join(generated_datasets["cat2000"], "trainSet/Stimuli/BlackWhite/001.jpg")
    with Image.open(path) as image:
        assert image.mode == "L"


def test_config_json_records_the_options(generated_datasets):
    with open(os.path.join(generated_datasets["cat2000"], "config.json")) as f:
        config = json.load(f)
    assert config["dataset"] == "cat2000" and config["num_images"] == 12 and config["seed"] == 0
    assert config["image_size"] == [36, 64] and config["num_categories"] == 4
    assert config["files"] == {"Action": 3, "Affective": 3, "Art": 3, "BlackWhite": 3}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    runs = {}
    for label, seed in (("a", 4), ("b", 4), ("c", 5)):
        runs[label] = str(tmp_path / label)
        generate_dataset("mit1003", runs[label], 3, seed=seed, image_size=(30, 40))
    files = _files(runs["a"])
    assert files == _files(runs["b"])
    _, mismatch, errors = filecmp.cmpfiles(runs["a"], runs["b"], files, shallow=False)
    assert mismatch == [] and errors == []
    image = "ALLSTIMULI/isynthetic_00000.jpeg"
    assert not filecmp.cmp(os.path.join(runs["a"], image), os.path.join(runs["c"], image), shallow=False)


def _nss(saliency, fixations):
    z = (saliency - saliency.mean()) / saliency.std()
    return z[fixations].mean()


@pytest.mark.parametrize("name, split", [("salicon", "train"), ("mit1003", "all"), ("cat2000", "all")])
def test_fixations_follow_image_content_beyond_center_bias(generated_datasets, name, split):
    # A model that looks at the image (local colour contrast, read from the
    # JPEG on disk) must beat the centre-bias baseline on every dataset.
    content_scores, center_scores = [], []
    for sample in iter_eval_samples(name, generated_datasets[name], split):
        with Image.open(sample.image_path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
        h, w = rgb.shape[:2]
        diagonal = np.hypot(h, w)
        surround = scipy.ndimage.gaussian_filter(rgb, (0.08 * diagonal, 0.08 * diagonal, 0))
        contrast = scipy.ndimage.gaussian_filter(np.linalg.norm(rgb - surround, axis=2), 0.03 * diagonal)
        rows, cols = np.mgrid[0:h, 0:w]
        center = np.exp(-0.5 * (((rows / h - 0.5) / 0.25) ** 2 + ((cols / w - 0.5) / 0.25) ** 2))
        content_scores.append(_nss(contrast, sample.fixation_original))
        center_scores.append(_nss(center, sample.fixation_original))
    assert np.mean(content_scores) > np.mean(center_scores) + 0.3
    assert np.mean(center_scores) > 0.2  # and the centre bias is there too


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of"):
        generate_dataset("coco", str(tmp_path), 2)
    with pytest.raises(ValueError, match="num_images"):
        generate_dataset("salicon", str(tmp_path), 0)


def test_cli_writes_a_dataset(tmp_path):
    out = tmp_path / "mit"
    command = [sys.executable, "-m", "keras_emlnet.data.generate", "--dataset", "mit1003",
               "--out", str(out), "--num_images", "2", "--image_size", "30x40", "--seed", "3"]
    subprocess.run(command, check=True, timeout=120, capture_output=True)
    assert len(os.listdir(out / "ALLSTIMULI")) == 2 and len(os.listdir(out / "ALLFIXATIONMAPS")) == 4
    assert json.loads((out / "config.json").read_text())["image_size"] == [30, 40]
    missing_out = subprocess.run(command[:5] + ["--num_images", "2"], timeout=120, capture_output=True)
    assert missing_out.returncode != 0 and b"--out" in missing_out.stderr
