"""TFRecord shards of a dataset split: the original files' bytes, checked once.

`convert(dataset, data_dir, split, out, num_shards)` (CLI: `python -m
keras_emlnet.data.to_tfrecord`) writes

    <out>/<split>-00000-of-000NN.tfrecord        tf.train.Example records
    <out>/<split>-00000-of-000NN.tfrecord.json   that shard's count and bad samples
    <out>/<split>.conversion.json                the conversion's settings, plan and status

Each record holds the original encoded image and density-map bytes (no
re-encoding: the pipeline decodes exactly what the folder holds), the
fixations as 0-based (row, col) pixels of the upright original image (parsed
once here, from .mat or binary maps), the upright original size, the name,
CAT2000 category and the source path. Every sample is decoded and checked
with the dataset's reader first (`readers.load_sample`): a bad one is
reported and left out, as the readers do with ``skip_bad``.

Shards hold consecutive samples of the reader's order, so reading them in
order gives the folder's order. Each shard is written under a temporary name
and renamed, then its ``.json``; a rerun with the same settings skips the
shards whose ``.json`` exists (resume) and refuses other settings.

`is_shards_dir`, `open_split` and `iter_records` read them back
(`keras_emlnet.data.build_dataset` and `iter_eval_samples` take a shards
folder wherever they take a dataset folder).
"""

import dataclasses
import hashlib
import io
import json
import logging
import os

import numpy as np

from keras_emlnet import atomic_files, image_files
from keras_emlnet.data import readers, records

FORMAT = "keras_emlnet.tfrecord/1"
CONVERSION_SUFFIX = ".conversion.json"
_LOG = logging.getLogger(__name__)
# Settings that identify a conversion: a rerun must match them to resume.
_PLAN_KEYS = ("format", "dataset", "data_dir", "split", "num_shards", "samples", "samples_sha256", "has_targets")


def shard_name(split, index, num_shards):
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def conversion_path(directory, split):
    return os.path.join(directory, split + CONVERSION_SUFFIX)


def is_shards_dir(path):
    """True if `path` is a folder holding converted shards (any split's conversion record)."""
    return os.path.isdir(path) and any(name.endswith(CONVERSION_SUFFIX) for name in os.listdir(path))


# ------------------------------------------------------------------ writing


def _bytes_feature(values):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _int_feature(values):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def encode_example(record, image_bytes, size, density_bytes=None, rows=(), cols=()):
    """One serialized tf.train.Example (see the module docstring for the fields)."""
    import tensorflow as tf

    feature = {
        "name": _bytes_feature([record.name.encode()]),
        "category": _bytes_feature([(record.category or "").encode()]),
        "image_path": _bytes_feature([record.image_path.encode()]),
        "image": _bytes_feature([image_bytes]),
        "size": _int_feature(size),
        "density": _bytes_feature([density_bytes or b""]),
        "fixation_rows": _int_feature(rows),
        "fixation_cols": _int_feature(cols),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _checked_example(reader, record):
    """The record's serialized example after the reader's full checks (raises BadSampleError)."""
    if record.density_path is None:  # images only (SALICON test)
        image = records.load_rgb(record.image_path)
        return encode_example(record, _read_bytes(record.image_path), image.shape[:2])
    image, _, rows, cols = readers.load_sample(reader, record)
    return encode_example(record, _read_bytes(record.image_path), image.shape[:2],
                          _read_bytes(record.density_path), rows, cols)


@dataclasses.dataclass
class ConversionResult:
    """What `convert` did: examples written, bad samples ({path: problem}), shards written now / resumed."""

    config_path: str
    examples: int
    bad_samples: dict
    shards_written: int
    shards_resumed: int


def _plan(dataset, data_dir, split, num_shards, samples, has_targets):
    paths = [record.image_path for record in samples]
    return {
        "format": FORMAT,
        "dataset": dataset,
        "data_dir": os.path.abspath(data_dir),
        "split": split,
        "num_shards": num_shards,
        "samples": len(samples),
        "samples_sha256": hashlib.sha256("\n".join(paths).encode()).hexdigest(),
        "has_targets": has_targets,
    }


def convert(dataset, data_dir, split, out, num_shards, *, report=None, progress=None):
    """Converts a dataset folder's split into `num_shards` TFRecord shards in `out`.

    Args:
        dataset: "salicon", "mit1003" or "cat2000".
        data_dir: the dataset's folder as unzipped.
        split: the reader's split ("train", "val", "all", SALICON "test").
        out: the shards folder (created); may hold other splits' shards.
        num_shards: shards to write (>= 1; at most one per sample).
        report: a records.BadDataReport collecting bad samples (one is made if None).
        progress: optional callable(shard_index, num_shards, examples_in_shard).

    Returns:
        A ConversionResult.

    Raises:
        ValueError: `out` holds this split converted with other settings, or
            no samples.
    """
    import tensorflow as tf

    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    reader = readers.get_reader(dataset)
    report = records.BadDataReport() if report is None else report
    samples = reader.list_samples(data_dir, split, skip_bad=True, report=report)
    if not samples:
        raise ValueError(f"no usable {dataset} samples in {data_dir!r} split {split!r}")
    num_shards = min(num_shards, len(samples))
    has_targets = samples[0].density_path is not None
    plan = _plan(dataset, data_dir, split, num_shards, samples, has_targets)
    os.makedirs(out, exist_ok=True)
    config_path = conversion_path(out, split)
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as f:
            recorded = json.load(f)
        differences = [f"{key}: recorded {recorded.get(key)!r}, now {plan[key]!r}"
                       for key in _PLAN_KEYS if recorded.get(key) != plan[key]]
        if differences:
            raise ValueError(f"{out} holds split {split!r} converted with other settings "
                             f"({'; '.join(differences)}); use another --out or the recorded settings")
    atomic_files.write_json_atomic(config_path, {**plan, "status": "in_progress"})
    listing_bad = report.problems  # missing partner files, found while listing
    written = resumed = 0
    bad, counts = dict(listing_bad), []
    for index in range(num_shards):
        name = shard_name(split, index, num_shards)
        path = os.path.join(out, name)
        index_path = path + ".json"
        if os.path.isfile(index_path) and os.path.isfile(path):
            with open(index_path, encoding="utf-8") as f:
                done = json.load(f)
            counts.append(done["examples"])
            bad.update(done["bad_samples"])
            resumed += 1
            continue
        chunk = samples[index * len(samples) // num_shards:(index + 1) * len(samples) // num_shards]
        shard_bad, count = {}, 0
        with atomic_files.atomic_path(path) as tmp:
            with tf.io.TFRecordWriter(tmp) as writer:
                for record in chunk:
                    try:
                        writer.write(_checked_example(reader, record))
                        count += 1
                    except records.BadSampleError as error:
                        report.add(error)
                        shard_bad[error.path] = error.problem
        atomic_files.write_json_atomic(index_path, {"examples": count, "bad_samples": shard_bad})
        counts.append(count)
        bad.update(shard_bad)
        written += 1
        if progress is not None:
            progress(index, num_shards, count)
    atomic_files.write_json_atomic(config_path, {
        **plan,
        "status": "complete",
        "examples": sum(counts),
        "shards": [{"file": shard_name(split, i, num_shards), "examples": c} for i, c in enumerate(counts)],
        "bad_samples": bad,
        "features": {
            "image": "the original encoded image file's bytes",
            "density": "the original encoded density map file's bytes (empty without targets)",
            "size": "[h, w] of the image after its EXIF orientation",
            "fixation_rows, fixation_cols": "0-based fixation pixels in that upright frame",
            "name, category, image_path": "the sample's name, CAT2000 category ('' else), source file",
        },
    })
    return ConversionResult(config_path, sum(counts), bad, written, resumed)


# ------------------------------------------------------------------ reading


@dataclasses.dataclass(frozen=True)
class ShardSplit:
    """One converted split: its shard files (in sample order), examples, conversion record."""

    directory: str
    files: tuple
    examples: int
    has_targets: bool
    bad_samples: dict


def open_split(directory, split, dataset):
    """The converted `split` of `dataset` in shards folder `directory`.

    Raises:
        ValueError: the split was not converted there, its conversion did not
            finish, or it is another dataset's.
    """
    path = conversion_path(directory, split)
    if not os.path.isfile(path):
        converted = sorted(n[: -len(CONVERSION_SUFFIX)] for n in os.listdir(directory) if n.endswith(CONVERSION_SUFFIX))
        raise ValueError(f"shards folder {directory} has no split {split!r} (converted: {converted}); "
                         f"run python -m keras_emlnet.data.to_tfrecord --split {split}")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    if config.get("status") != "complete":
        raise ValueError(f"{path}: the conversion has not finished (rerun it to resume)")
    if config["dataset"] != dataset:
        raise ValueError(f"{directory} holds {config['dataset']} shards, not {dataset}")
    files = tuple(os.path.join(directory, shard["file"]) for shard in config["shards"] if shard["examples"])
    return ShardSplit(directory, files, int(config["examples"]), bool(config["has_targets"]),
                      dict(config["bad_samples"]))


def feature_spec():
    import tensorflow as tf

    return {
        "name": tf.io.FixedLenFeature([], tf.string),
        "category": tf.io.FixedLenFeature([], tf.string),
        "image_path": tf.io.FixedLenFeature([], tf.string),
        "image": tf.io.FixedLenFeature([], tf.string),
        "size": tf.io.FixedLenFeature([2], tf.int64),
        "density": tf.io.FixedLenFeature([], tf.string),
        "fixation_rows": tf.io.VarLenFeature(tf.int64),
        "fixation_cols": tf.io.VarLenFeature(tf.int64),
    }


def tf_parse(serialized):
    """A serialized record → the raw sample dict `decoding` takes (in the graph)."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, feature_spec())
    return {
        "name": parsed["image_path"],
        "image": parsed["image"],
        "density": parsed["density"],
        "size": parsed["size"],
        "rows": tf.sparse.to_dense(parsed["fixation_rows"]),
        "cols": tf.sparse.to_dense(parsed["fixation_cols"]),
    }


@dataclasses.dataclass(frozen=True)
class Record:
    """One decoded record (NumPy), for evaluation at the original size."""

    name: str
    category: object
    image_path: str
    image: np.ndarray  # uint8 (h, w, 3), upright
    density: object  # float64 (h, w) summing to 1, or None
    rows: np.ndarray
    cols: np.ndarray


def iter_records(shards, *, limit=None):
    """Yields the `ShardSplit`'s records in sample order, decoded as the NumPy readers do."""
    import tensorflow as tf
    from PIL import Image

    dataset = tf.data.TFRecordDataset(list(shards.files))
    if limit is not None:
        dataset = dataset.take(limit)
    for serialized in dataset.as_numpy_iterator():
        features = tf.train.Example.FromString(serialized).features.feature
        text = {key: features[key].bytes_list.value[0].decode() for key in ("name", "category", "image_path")}
        image = image_files.decode_rgb(features["image"].bytes_list.value[0], name=text["image_path"])
        density = None
        if shards.has_targets:
            with Image.open(io.BytesIO(features["density"].bytes_list.value[0])) as grey:
                density = np.asarray(grey.convert("L"), dtype=np.float64)
            density = density / density.sum()
        yield Record(text["name"], text["category"] or None, text["image_path"], image, density,
                     np.asarray(features["fixation_rows"].int64_list.value, np.int64),
                     np.asarray(features["fixation_cols"].int64_list.value, np.int64))
