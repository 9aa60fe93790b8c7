"""tf.data pipeline and evaluation iterator on generated data."""

import os
import shutil

import numpy as np
import pytest
import scipy.io

from keras_emlnet.models.geometry import make_geometry
from keras_emlnet.data import (
    EvalSample,
    build_dataset,
    build_train_val,
    iter_eval_samples,
    records,
)
from keras_emlnet.data.pipeline import get_reader

SIZE = (24, 32)
DATASETS = ("salicon", "mit1003", "cat2000")


def _arrays(dataset):
    images, targets = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(targets)


@pytest.mark.parametrize("name", DATASETS)
def test_batches_have_the_contract_layout(generated_datasets, name):
    ds = build_dataset(name, generated_datasets[name], "val", input_size=SIZE, batch_size=4)
    images, y_true = _arrays(ds)
    assert images.dtype == np.float32 and y_true.dtype == np.float32
    assert images.shape[1:] == SIZE + (3,) and y_true.shape[1:] == SIZE + (2,)
    assert 0 <= images.min() and images.max() <= 255 and images.max() > 100
    np.testing.assert_allclose(y_true[..., 0].sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert set(np.unique(y_true[..., 1])) == {0.0, 1.0}
    assert ds.bad_data_report.count == 0


@pytest.mark.parametrize("name", DATASETS)
def test_targets_match_independent_computation(generated_datasets, name):
    # Model-frame targets rebuilt in NumPy from the original-size targets.
    root = generated_datasets[name]
    images, y_true = _arrays(build_dataset(name, root, "train", input_size=SIZE, batch_size=3))
    samples = list(iter_eval_samples(name, root, "train", input_size=SIZE))
    assert len(samples) == len(images)
    for sample, image, target in zip(samples, images, y_true):
        geom = sample.geometry
        assert geom.mode == get_reader(name).MODE
        np.testing.assert_allclose(image, sample.image_model, atol=2e-3)
        rows, cols = np.nonzero(sample.fixation_original)
        np.testing.assert_array_equal(target[..., 1], geom.fixations_to_model(rows, cols))
        density = geom.image_to_model(sample.density_original, antialias=False)  # maps: no antialias
        np.testing.assert_allclose(target[..., 0], density / density.sum(), atol=1e-6)


def test_images_at_the_model_size_are_the_decoded_pixels_exactly(generated_datasets):
    # SALICON's images have the model size (480x640 in the paper; the generated ones 48x64
    # here): the pipeline skips the identity resize, and its images equal the NumPy
    # reader's bit for bit (the decoded uint8 pixels), its targets the reader's.
    root = generated_datasets["salicon"]
    size = (48, 64)  # the generated SALICON images' size (tests/conftest.py)
    images, y_true = _arrays(build_dataset("salicon", root, "train", input_size=size, batch_size=3))
    samples = list(iter_eval_samples("salicon", root, "train", input_size=size))
    assert len(samples) == len(images) and samples[0].density_original.shape == size
    for sample, image, target in zip(samples, images, y_true):
        np.testing.assert_array_equal(image, sample.image_model)
        np.testing.assert_array_equal(target[..., 1], sample.fixation_original)
        np.testing.assert_allclose(target[..., 0], sample.density_original, rtol=1e-5, atol=1e-9)


def test_mit1003_is_padded_to_4_3(generated_datasets):
    root = generated_datasets["mit1003"]
    images, y_true = _arrays(build_dataset("mit1003", root, "all", input_size=SIZE, batch_size=16))
    padded_models = 0
    for sample, image, target in zip(iter_eval_samples("mit1003", root, "all", input_size=SIZE), images, y_true):
        geom = sample.geometry
        assert geom == make_geometry(sample.density_original.shape, SIZE, "pad_to_4_3")
        top, _, left, _ = geom.padding
        sy, sx = geom.scale
        # model rows/cols whose filter support lies in the padding band hold
        # black image and zero density (a fixation on the content's edge may
        # round into such a pixel: that is its nearest model pixel); images are
        # antialiased, so their triangle filter reaches max(1/scale, 1) input pixels
        band_rows = (np.arange(SIZE[0]) + 0.5) / sy + max(1 / sy, 1) <= top
        band_cols = (np.arange(SIZE[1]) + 0.5) / sx + max(1 / sx, 1) <= left
        for band in (np.s_[band_rows], np.s_[:, band_cols]):
            assert np.all(image[band] == 0) and np.all(target[band][..., 0] == 0)
        padded_models += int(band_rows.any() or band_cols.any())
    assert padded_models >= 5  # generated MIT1003 sizes are rarely 4:3


def _match_flip(image, target, ref_images, ref_targets):
    """(index, flipped) of the reference sample `image` is, checking targets agree."""
    for j, (ref_image, ref_target) in enumerate(zip(ref_images, ref_targets)):
        for flipped in (False, True):
            ri, rt = (ref_image[:, ::-1], ref_target[:, ::-1]) if flipped else (ref_image, ref_target)
            if np.allclose(image, ri, atol=1e-4):
                np.testing.assert_allclose(target, rt, atol=1e-7)  # same flip for the targets
                return j, flipped
    raise AssertionError("training sample matches no reference sample")


@pytest.mark.parametrize("name", ["salicon", "mit1003"])  # resize and pad_to_4_3
def test_training_flips_image_and_targets_together(generated_datasets, name):
    root = generated_datasets[name]
    ref_images, ref_targets = _arrays(build_dataset(name, root, "train", input_size=SIZE, batch_size=16))
    ds = build_dataset(name, root, "train", input_size=SIZE, batch_size=3, training=True, seed=7)
    seen = []
    for _ in range(3):  # three epochs: reshuffled, re-flipped
        images, targets = _arrays(ds)
        epoch = [_match_flip(x, y, ref_images, ref_targets) for x, y in zip(images, targets)]
        assert sorted(j for j, _ in epoch) == list(range(len(ref_images)))  # each once
        seen.extend(epoch)
    assert {flipped for _, flipped in seen} == {False, True}
    # a flipped fixation at model column c sits at W - 1 - c
    j, _ = next(item for item in seen if item[1])
    ref_rows, ref_cols = np.nonzero(ref_targets[j][..., 1])
    flipped_rows, flipped_cols = np.nonzero(ref_targets[j][:, ::-1][..., 1])
    assert sorted(zip(flipped_rows, flipped_cols)) == sorted(zip(ref_rows, SIZE[1] - 1 - ref_cols))


def test_training_order_and_flips_are_seeded(generated_datasets):
    root = generated_datasets["salicon"]

    def first_epoch(seed):
        ds = build_dataset("salicon", root, "train", input_size=SIZE, batch_size=4, training=True, seed=seed)
        return _arrays(ds)

    a, b = first_epoch(3), first_epoch(3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert any(not np.array_equal(a[0], first_epoch(s)[0]) for s in (4, 5))


def test_train_val_pair_uses_the_run_config(generated_datasets):
    # the training stages' datasets: train shuffled and flipped with the run's seed, val plain
    from keras_emlnet.training.config import TrainConfig

    root = generated_datasets["salicon"]
    config = TrainConfig(input_size=SIZE, batch_size=3, seed=7)
    report = records.BadDataReport()
    train, val = build_train_val("salicon", root, config, report=report)
    train_images, _ = _arrays(train)
    # the seeded shuffle order; each image as the reference has it or mirrored (the flips draw
    # from Keras's seed state, which earlier tests in the process move on)
    reference, _ = _arrays(build_dataset("salicon", root, "train", input_size=SIZE, batch_size=3, training=True,
                                         seed=7))
    assert train_images.shape == reference.shape and next(iter(train))[0].shape[0] == 3
    for got, want in zip(train_images, reference):
        assert np.array_equal(got, want) or np.array_equal(got, want[:, ::-1])
    for got, want in zip(_arrays(val), _arrays(build_dataset("salicon", root, "val", input_size=SIZE, batch_size=3))):
        np.testing.assert_array_equal(got, want)
    assert train.bad_data_report is report and val.bad_data_report is report


def test_cache_and_limit(generated_datasets, tmp_path):
    root = generated_datasets["cat2000"]
    plain = _arrays(build_dataset("cat2000", root, "train", input_size=SIZE, batch_size=4))
    for cache in (True, str(tmp_path / "cache")):
        ds = build_dataset("cat2000", root, "train", input_size=SIZE, batch_size=4, cache=cache)
        for _ in range(2):  # second pass reads the cache
            cached = _arrays(ds)
            np.testing.assert_array_equal(cached[0], plain[0])
            np.testing.assert_array_equal(cached[1], plain[1])
    limited = _arrays(build_dataset("cat2000", root, "train", input_size=SIZE, limit=3))
    np.testing.assert_array_equal(limited[0], plain[0][:3])


def test_salicon_test_split_yields_images_only(generated_datasets):
    ds = build_dataset("salicon", generated_datasets["salicon"], "test", input_size=SIZE, batch_size=8)
    batches = list(ds)
    assert len(batches) == 1 and batches[0].shape == (2,) + SIZE + (3,)
    with pytest.raises(ValueError, match="no ground truth"):
        next(iter_eval_samples("salicon", generated_datasets["salicon"], "test"))


def _damage(kind, record):
    if kind == "unreadable image":
        with open(record.image_path, "wb") as f:
            f.write(b"not an image at all")
        return record.image_path, "unreadable image"
    if kind == "missing partner":
        os.remove(record.fixation_path)
        return record.fixation_path, "missing file"
    mat = scipy.io.loadmat(record.fixation_path)
    contents = {k: v for k, v in mat.items() if not k.startswith("__")}
    if kind == "mat without fields":
        contents["gazes"] = contents.pop("gaze")
        problem = "no ['gaze'] field"
    else:  # fixation outside the image: y = 49 in a 48-row image (1-based)
        contents["gaze"][0, 0]["fixations"] = np.array([[5.0, 49.0]])
        problem = "outside"
    scipy.io.savemat(record.fixation_path, contents)
    return record.fixation_path, problem


@pytest.mark.parametrize(
    "kind", ["unreadable image", "missing partner", "mat without fields", "fixation outside"]
)
def test_bad_sample_raises_or_is_skipped_and_counted(generated_datasets, tmp_path, kind):
    root = str(tmp_path / "salicon")
    shutil.copytree(generated_datasets["salicon"], root)
    record = get_reader("salicon").list_samples(root, "train")[2]
    path, problem = _damage(kind, record)

    with pytest.raises(Exception) as info:  # raised by list_samples or inside tf.data
        list(build_dataset("salicon", root, "train", input_size=SIZE))
    assert path in str(info.value) and problem in str(info.value)
    with pytest.raises(records.BadSampleError, match="salicon"):
        list(iter_eval_samples("salicon", root, "train", input_size=SIZE))

    ds = build_dataset("salicon", root, "train", input_size=SIZE, batch_size=2, skip_bad=True)
    for _ in range(2):  # counted once however many epochs meet it
        assert len(_arrays(ds)[0]) == 3
    assert ds.bad_data_report.count == 1
    assert problem in ds.bad_data_report.problems[path]
    report = records.BadDataReport()
    kept = list(iter_eval_samples("salicon", root, "train", input_size=SIZE, skip_bad=True, report=report))
    assert len(kept) == 3 and record.name not in {s.name for s in kept}
    assert list(report.problems) == [path]


@pytest.mark.parametrize("name", DATASETS)
def test_eval_samples_at_original_resolution(generated_datasets, name):
    split = "val"
    samples = list(iter_eval_samples(name, generated_datasets[name], split, input_size=SIZE))
    assert samples and all(isinstance(s, EvalSample) for s in samples)
    reader = get_reader(name)
    for sample, record in zip(samples, reader.list_samples(generated_datasets[name], split)):
        assert sample.name == record.name and sample.category == record.category
        h, w = sample.geometry.original_size
        assert sample.density_original.shape == (h, w) and sample.density_original.dtype == np.float64
        assert sample.fixation_original.shape == (h, w) and sample.fixation_original.dtype == bool
        assert sample.density_original.sum() == pytest.approx(1.0)
        rows, cols = reader.read_fixations(record.fixation_path, (h, w))
        assert set(zip(*np.nonzero(sample.fixation_original))) == set(zip(rows, cols))
        assert sample.image_model.shape == SIZE + (3,) and sample.image_model.dtype == np.float32
        assert sample.geometry.map_to_original(sample.image_model[..., 0]).shape == (h, w)
    if name == "cat2000":
        assert {s.category for s in samples} == {"Action", "Affective", "Art", "BlackWhite"}


def test_unknown_dataset_and_empty_split(generated_datasets, tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of"):
        build_dataset("coco", generated_datasets["salicon"], "train")
    os.makedirs(tmp_path / "images" / "train")
    with pytest.raises(ValueError, match="no usable salicon samples"):
        build_dataset("salicon", str(tmp_path), "train")
