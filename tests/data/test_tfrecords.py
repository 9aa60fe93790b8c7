"""TFRecord shards (keras_emlnet.data.tfrecords, the to_tfrecord CLI) and the in-graph pipeline over them."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_emlnet import image_files
from keras_emlnet.data import build_dataset, iter_eval_samples, records, tfrecords
from keras_emlnet.data.pipeline import get_reader
from tests.paths import REPO_ROOT

SIZE = (24, 32)
DATASETS = ("salicon", "mit1003", "cat2000")


def _arrays(dataset):
    images, targets = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(targets)


@pytest.fixture(scope="module")
def shards(generated_datasets, tmp_path_factory):
    """{dataset: shards folder} with train (3 shards) and val converted."""
    base = tmp_path_factory.mktemp("shards")
    out = {}
    for name in DATASETS:
        out[name] = str(base / name)
        for split in ("train", "val"):
            tfrecords.convert(name, generated_datasets[name], split, out[name], 3)
    return out


@pytest.mark.parametrize("name", DATASETS)
def test_shards_give_the_folder_examples(generated_datasets, shards, name):
    for split in ("train", "val"):
        folder = _arrays(build_dataset(name, generated_datasets[name], split, input_size=SIZE, batch_size=3))
        sharded = build_dataset(name, shards[name], split, input_size=SIZE, batch_size=3)
        got = _arrays(sharded)
        np.testing.assert_array_equal(got[0], folder[0])
        np.testing.assert_array_equal(got[1], folder[1])
        assert sharded.num_examples == len(folder[0])


@pytest.mark.parametrize("name", DATASETS)
def test_records_hold_the_original_bytes_fixations_and_size(generated_datasets, shards, name):
    reader = get_reader(name)
    listed = reader.list_samples(generated_datasets[name], "train")
    split = tfrecords.open_split(shards[name], "train", name)
    assert split.examples == len(listed) and len(split.files) == 3
    serialized = list(tf.data.TFRecordDataset(list(split.files)).as_numpy_iterator())
    for record, raw in zip(listed, serialized, strict=True):
        feature = tf.train.Example.FromString(raw).features.feature
        with open(record.image_path, "rb") as f:
            assert feature["image"].bytes_list.value[0] == f.read()  # no re-encoding
        with open(record.density_path, "rb") as f:
            assert feature["density"].bytes_list.value[0] == f.read()
        size = image_files.read_header(record.image_path).oriented_size
        assert list(feature["size"].int64_list.value) == list(size)
        rows, cols = reader.read_fixations(record.fixation_path, size)
        np.testing.assert_array_equal(feature["fixation_rows"].int64_list.value, rows)
        np.testing.assert_array_equal(feature["fixation_cols"].int64_list.value, cols)
        assert feature["name"].bytes_list.value[0].decode() == record.name
    config = json.loads(open(tfrecords.conversion_path(shards[name], "train")).read())
    assert config["status"] == "complete" and config["dataset"] == name and config["num_shards"] == 3
    assert config["data_dir"] == os.path.abspath(generated_datasets[name]) and config["bad_samples"] == {}


def test_eval_samples_from_shards_equal_the_folder_ones(generated_datasets, shards):
    for name in ("mit1003", "cat2000"):
        folder = list(iter_eval_samples(name, generated_datasets[name], "val", input_size=SIZE))
        sharded = list(iter_eval_samples(name, shards[name], "val", input_size=SIZE))
        assert [s.name for s in sharded] == [s.name for s in folder]
        for got, want in zip(sharded, folder):
            assert got.category == want.category and got.geometry == want.geometry
            assert got.image_path == want.image_path
            np.testing.assert_array_equal(got.image_model, want.image_model)
            np.testing.assert_array_equal(got.density_original, want.density_original)
            np.testing.assert_array_equal(got.fixation_original, want.fixation_original)


def test_training_stream_replays_nothing_when_resumed(generated_datasets, shards):
    # The order of epoch e is a function of (seed, e): a stream started s batches
    # in gives exactly the batches an uninterrupted stream gives from batch s on.
    for root in (generated_datasets["mit1003"], shards["mit1003"]):
        ds = build_dataset("mit1003", root, "train", input_size=SIZE, batch_size=4, training=True, seed=5)
        per_epoch = ds.batches_per_epoch
        assert per_epoch == 3  # 9 samples: 4 + 4 + 1, each epoch batched on its own
        whole = [(x.numpy(), y.numpy()) for x, y in ds.epoch_stream(0).take(3 * per_epoch)]
        assert [len(x) for x, _ in whole] == [4, 4, 1] * 3
        for start in (per_epoch, per_epoch + 1, 2 * per_epoch + 2):
            resumed = [(x.numpy(), y.numpy()) for x, y in ds.epoch_stream(start).take(3 * per_epoch - start)]
            for (x, y), (wx, wy) in zip(resumed, whole[start:], strict=True):
                np.testing.assert_array_equal(x, wx)
                np.testing.assert_array_equal(y, wy)
        # each epoch holds every sample once (up to its flip), in its own order
        reference = _arrays(build_dataset("mit1003", root, "train", input_size=SIZE, batch_size=9))[0]
        orders = []
        for epoch in range(3):
            images = np.concatenate([x for x, _ in whole[epoch * per_epoch:(epoch + 1) * per_epoch]])
            order = [next(j for j, ref in enumerate(reference)
                          if np.array_equal(image, ref) or np.array_equal(image, ref[:, ::-1])) for image in images]
            assert sorted(order) == list(range(9))
            orders.append(order)
        assert orders[0] != orders[1] or orders[1] != orders[2]


def test_conversion_skips_bad_samples_and_resumes(generated_datasets, tmp_path):
    root = str(tmp_path / "salicon")
    shutil.copytree(generated_datasets["salicon"], root)
    bad = get_reader("salicon").list_samples(root, "train")[1]
    with open(bad.image_path, "wb") as f:
        f.write(b"not an image at all")
    out = str(tmp_path / "shards")
    first = tfrecords.convert("salicon", root, "train", out, 2)
    assert first.examples == 3 and first.shards_written == 2
    assert list(first.bad_samples) == [bad.image_path] and "unreadable image" in first.bad_samples[bad.image_path]
    # the shards path reports what the conversion left out
    ds = build_dataset("salicon", out, "train", input_size=SIZE, batch_size=2)
    assert len(_arrays(ds)[0]) == 3 and list(ds.bad_data_report.problems) == [bad.image_path]

    # a conversion killed after shard 0: shard 1 and its index missing, the record in progress
    shard0 = os.path.join(out, tfrecords.shard_name("train", 0, 2))
    shard1 = os.path.join(out, tfrecords.shard_name("train", 1, 2))
    before = os.stat(shard0).st_mtime_ns
    os.remove(shard1)
    os.remove(shard1 + ".json")
    config_path = tfrecords.conversion_path(out, "train")
    config = json.loads(open(config_path).read())
    with open(config_path, "w") as f:
        json.dump({**config, "status": "in_progress"}, f)
    with pytest.raises(ValueError, match="has not finished"):
        build_dataset("salicon", out, "train", input_size=SIZE)
    again = tfrecords.convert("salicon", root, "train", out, 2)
    assert (again.shards_written, again.shards_resumed, again.examples) == (1, 1, 3)
    assert os.stat(shard0).st_mtime_ns == before and bad.image_path in again.bad_samples
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]
    with pytest.raises(ValueError, match="num_shards: recorded 2, now 3"):
        tfrecords.convert("salicon", root, "train", out, 3)
    with pytest.raises(ValueError, match="holds salicon shards, not cat2000"):
        build_dataset("cat2000", out, "train")
    with pytest.raises(ValueError, match="no split 'val'"):
        build_dataset("salicon", out, "val")


def test_cli_converts_with_the_documented_flags(generated_datasets, tmp_path):
    out = tmp_path / "shards"
    done = subprocess.run(
        [sys.executable, "-m", "keras_emlnet.data.to_tfrecord", "--dataset", "cat2000", "--data_dir",
         generated_datasets["cat2000"], "--split", "train", "--out", str(out), "--num_shards", "2"],
        cwd=REPO_ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["train-00000-of-00002.tfrecord", "train-00000-of-00002.tfrecord.json",
                                       "train-00001-of-00002.tfrecord", "train-00001-of-00002.tfrecord.json",
                                       "train.conversion.json"]
    assert "8 examples" in done.stderr


def test_exif_rotated_images_are_oriented_in_the_graph(generated_datasets, tmp_path):
    # A photo stored sideways with EXIF orientation 6 (display rotated 90 degrees clockwise):
    # the pipeline turns it upright as the NumPy reader (image_files.decode_rgb) does.
    root = str(tmp_path / "salicon")
    shutil.copytree(generated_datasets["salicon"], root)
    record = get_reader("salicon").list_samples(root, "val")[0]
    upright = records.load_rgb(record.image_path)
    exif = Image.Exif()
    exif[image_files.EXIF_ORIENTATION_TAG] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(upright))).save(record.image_path, quality=95, exif=exif)
    assert image_files.read_header(record.image_path).orientation == 6
    images, _ = _arrays(build_dataset("salicon", root, "val", input_size=SIZE, batch_size=2))
    reference = next(iter_eval_samples("salicon", root, "val", input_size=SIZE))
    np.testing.assert_allclose(images[0], reference.image_model, atol=2e-3)
    # upright: close to the original picture (JPEG re-encoding aside), far from the stored pixels
    assert np.abs(images[0] - get_geometry_image(upright)).mean() < 4
    sideways = tf.io.decode_jpeg(open(record.image_path, "rb").read()).numpy()
    assert sideways.shape[:2] == upright.shape[1::-1]


def get_geometry_image(image):
    from keras_emlnet.models.geometry import make_geometry

    return make_geometry(image.shape[:2], SIZE, "resize").image_to_model(image)
