"""Readers (SALICON, MIT1003, CAT2000) on generated data; splits; every kind of bad file."""

import io
import logging
import os
import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

from keras_emlnet.data import cat2000, mit1003, records, salicon, splits


def _copy(generated_datasets, name, tmp_path):
    root = tmp_path / name
    shutil.copytree(generated_datasets[name], root)
    return str(root)


def _image_size(path):
    with Image.open(path) as image:
        return image.size[::-1]


# ------------------------------------------------------------------ SALICON


def test_salicon_lists_each_split(generated_datasets):
    root = generated_datasets["salicon"]
    counts = {split: len(salicon.list_samples(root, split)) for split in salicon.SPLITS}
    assert counts == {"train": 4, "val": 2, "test": 2}
    record = salicon.list_samples(root, "val")[0]
    assert record.name.startswith("COCO_val2014_")
    assert record.density_path.endswith(os.path.join("maps", "val", record.name + ".png"))
    assert record.fixation_path.endswith(os.path.join("fixations", "val", record.name + ".mat"))
    test_record = salicon.list_samples(root, "test")[0]
    assert test_record.density_path is None and test_record.fixation_path is None


def test_salicon_fixations_match_an_independent_read(generated_datasets):
    for record in salicon.list_samples(generated_datasets["salicon"], "train"):
        rows, cols = salicon.read_fixations(record.fixation_path, (48, 64))
        # independent: MATLAB-style objects, 1-based (x, y)
        mat = scipy.io.loadmat(record.fixation_path, squeeze_me=True, struct_as_record=False)
        xy = np.concatenate([np.atleast_2d(obs.fixations) for obs in np.atleast_1d(mat["gaze"])])
        np.testing.assert_array_equal(cols, xy[:, 0] - 1)
        np.testing.assert_array_equal(rows, xy[:, 1] - 1)
        assert list(mat["resolution"]) == [48, 64]
        assert mat["image"] == record.name


def test_salicon_rejects_fixation_outside_image(generated_datasets, tmp_path):
    root = _copy(generated_datasets, "salicon", tmp_path)
    path = salicon.list_samples(root, "train")[0].fixation_path
    mat = scipy.io.loadmat(path)
    mat["gaze"][0, 0]["fixations"] = np.array([[3.0, 4.0], [65.0, 10.0]])  # x = 65 > 64
    scipy.io.savemat(path, {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(records.BadSampleError, match="outside") as info:
        salicon.read_fixations(path, (48, 64))
    assert info.value.path == path and os.path.basename(path) in str(info.value)


@pytest.mark.parametrize(
    "contents, problem",
    [
        ({"image": "x", "resolution": np.array([[48.0, 64.0]])}, r"no \['gaze'\] field"),
        ({"gaze": np.zeros((3, 1))}, "not a struct array"),
        ({"gaze": np.zeros((1, 1), dtype=[("fixations", "O")]), "resolution": np.array([[40, 64]])},
         r"resolution \(40, 64\)"),
    ],
)
def test_salicon_mat_without_expected_fields(tmp_path, contents, problem):
    path = str(tmp_path / "COCO_train2014_000000000001.mat")
    scipy.io.savemat(path, contents)
    with pytest.raises(records.BadSampleError, match=problem) as info:
        salicon.read_fixations(path, (48, 64))
    assert path in str(info.value)


def test_unreadable_mat_file_is_named(tmp_path):
    path = tmp_path / "broken.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(records.BadSampleError, match="unreadable .mat") as info:
        salicon.read_fixations(str(path), (48, 64))
    assert str(path) in str(info.value)


def test_missing_partner_file_raises_or_is_reported(generated_datasets, tmp_path, caplog):
    root = _copy(generated_datasets, "salicon", tmp_path)
    victim = salicon.list_samples(root, "train")[1]
    os.remove(victim.density_path)
    with pytest.raises(records.BadSampleError, match="missing file") as info:
        salicon.list_samples(root, "train")
    assert info.value.path == victim.density_path
    report = records.BadDataReport()
    with caplog.at_level(logging.WARNING):
        kept = salicon.list_samples(root, "train", skip_bad=True, report=report)
    assert [r.name for r in kept if r.name == victim.name] == []
    assert len(kept) == 3 and report.count == 1
    assert report.problems[victim.density_path].startswith("missing file")
    assert victim.density_path in caplog.text


# ------------------------------------------------------------------ MIT1003


def test_mit1003_split_is_seeded_and_disjoint(generated_datasets):
    root = generated_datasets["mit1003"]
    train = [r.name for r in mit1003.list_samples(root, "train")]
    val = [r.name for r in mit1003.list_samples(root, "val")]
    everything = [r.name for r in mit1003.list_samples(root, "all")]
    assert len(val) == 1 and len(train) == 9  # 10 * 100/1003 rounds to 1
    assert sorted(train + val) == everything
    assert val == [r.name for r in mit1003.list_samples(root, "val")]  # same again


def test_mit1003_paper_split_sizes():
    assert splits.holdout_count(1003, mit1003.VAL_FRACTION) == 100
    train, val = splits.split_indices(1003, 100)
    assert len(train) == 903 and len(val) == 100
    assert not set(train) & set(val)
    np.testing.assert_array_equal(val, splits.split_indices(1003, 100)[1])


def test_mit1003_fixation_points_read_from_jpeg(generated_datasets):
    for record in mit1003.list_samples(generated_datasets["mit1003"], "all"):
        size = _image_size(record.image_path)
        assert _image_size(record.fixation_path) == size and _image_size(record.density_path) == size
        rows, cols = mit1003.read_fixations(record.fixation_path, size)
        assert rows.size > 50 and rows.max() < size[0] and cols.max() < size[1]


def test_mit1003_binary_jpeg_threshold_recovers_exact_points(tmp_path):
    # JPEG at MATLAB's default quality 75 blurs each point; the threshold undoes it.
    rng = np.random.default_rng(5)
    truth = np.zeros((40, 70), np.uint8)
    truth[rng.integers(0, 40, 25), rng.integers(0, 70, 25)] = 255
    path = str(tmp_path / "x_fixPts.jpg")
    Image.fromarray(truth).save(path, quality=75)
    assert np.count_nonzero(np.asarray(Image.open(path))) > np.count_nonzero(truth)  # ringing
    rows, cols = mit1003.read_fixations(path, (40, 70))
    assert set(zip(rows, cols)) == set(zip(*np.nonzero(truth)))


def test_mit1003_map_of_wrong_size_is_named(tmp_path):
    path = str(tmp_path / "y_fixPts.jpg")
    Image.fromarray(np.full((30, 40), 255, np.uint8)).save(path)
    with pytest.raises(records.BadSampleError, match=r"size 30x40 .* 31x40") as info:
        mit1003.read_fixations(path, (31, 40))
    assert path in str(info.value)


def test_unreadable_image_is_named(tmp_path):
    path = tmp_path / "broken.jpeg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(records.BadSampleError, match="unreadable image") as info:
        records.load_rgb(str(path))
    assert str(path) in str(info.value)


# ------------------------------------------------------------------ CAT2000


def test_cat2000_stratified_split(generated_datasets):
    root = generated_datasets["cat2000"]
    train = cat2000.list_samples(root, "train")
    val = cat2000.list_samples(root, "val")
    assert len(train) == 8 and len(val) == 4
    assert sorted(r.category for r in val) == ["Action", "Affective", "Art", "BlackWhite"]
    keys = {(r.category, r.name) for r in train}
    assert not keys & {(r.category, r.name) for r in val}
    assert keys | {(r.category, r.name) for r in val} == {
        (r.category, r.name) for r in cat2000.list_samples(root, "all")
    }


def test_cat2000_paper_split_sizes():
    categories = np.repeat(np.arange(20), 100)
    train, val = splits.stratified_split_indices(categories, cat2000.VAL_FRACTION)
    assert len(train) == 1800 and len(val) == 200
    assert np.all(np.bincount(categories[val]) == 10)
    np.testing.assert_array_equal(val, splits.stratified_split_indices(categories, 0.1)[1])


def test_cat2000_fixlocs_and_layout(generated_datasets, tmp_path):
    root = _copy(generated_datasets, "cat2000", tmp_path)
    # the release has Output/ folders inside category folders: not stimuli
    output_dir = os.path.join(root, "trainSet", "Stimuli", "Action", "Output")
    os.makedirs(output_dir)
    Image.fromarray(np.zeros((36, 64), np.uint8)).save(os.path.join(output_dir, "001_out.jpg"))
    both = [cat2000.list_samples(path, "all") for path in (root, os.path.join(root, "trainSet"))]
    assert both[0] == both[1] and len(both[0]) == 12
    for record in both[0]:
        assert os.path.dirname(record.image_path).endswith(record.category)
        rows, cols = cat2000.read_fixations(record.fixation_path, (36, 64))
        fix_locs = scipy.io.loadmat(record.fixation_path)["fixLocs"]
        assert fix_locs.shape == (36, 64)
        assert set(zip(rows, cols)) == set(zip(*np.nonzero(fix_locs)))


def test_cat2000_bad_fixlocs(tmp_path):
    path = str(tmp_path / "001.mat")
    scipy.io.savemat(path, {"fixations": np.ones((36, 64))})
    with pytest.raises(records.BadSampleError, match=r"no \['fixLocs'\] field"):
        cat2000.read_fixations(path, (36, 64))
    scipy.io.savemat(path, {"fixLocs": np.ones((30, 64))})
    with pytest.raises(records.BadSampleError, match="does not match"):
        cat2000.read_fixations(path, (36, 64))
    scipy.io.savemat(path, {"fixLocs": np.zeros((36, 64))})
    with pytest.raises(records.BadSampleError, match="no fixations"):
        cat2000.read_fixations(path, (36, 64))


def test_unknown_split_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="split"):
        salicon.list_samples(str(tmp_path), "holdout")
    with pytest.raises(FileNotFoundError, match="images"):
        salicon.list_samples(str(tmp_path), "train")
    with pytest.raises(FileNotFoundError, match="Stimuli"):
        cat2000.list_samples(str(tmp_path), "all")


def test_density_map_all_zero_is_named(tmp_path):
    path = str(tmp_path / "m.png")
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, format="PNG")
    with open(path, "wb") as f:
        f.write(buffer.getvalue())
    with pytest.raises(records.BadSampleError, match="all zero"):
        records.load_density(path, (8, 8))
