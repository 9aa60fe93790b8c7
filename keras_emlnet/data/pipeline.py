"""The tf.data training pipeline and the evaluation iterator over the datasets.

Training/validation batches are ``(image, y_true)``: the image in the model
frame (float32 RGB 0–255, (B, H, W, 3)) and y_true (B, H, W, 2) = [density map
summing to 1, binary fixation map] — the layout `EMLLoss` takes. Fixations are
mapped point by point from their original coordinates into the model frame
(Geometry.fixations_to_model), never by resizing a binary image.

Decoding (PIL, scipy) runs in `tf.numpy_function` on parallel tf.data threads
(PIL releases the GIL while decoding); resizing and padding run as TF ops.
Evaluation (`iter_eval_samples`) yields the targets at the original size and
the Geometry that maps a model-frame prediction back, as the benchmark scores
at the original resolution.
"""

import dataclasses

import numpy as np

from keras_emlnet.data import cat2000, mit1003, records, salicon
from keras_emlnet.models import geometry

READERS = {"salicon": salicon, "mit1003": mit1003, "cat2000": cat2000}
# After cache() the shuffle is a window this many samples wide (a full-size
# buffer would hold a second copy of the cached dataset in memory).
CACHED_SHUFFLE_BUFFER = 256


@dataclasses.dataclass(frozen=True)
class EvalSample:
    """One evaluation image with its original-size targets.

    Attributes:
        name: image stem.
        category: CAT2000 category, else None.
        image_model: float32 (H, W, 3) RGB 0–255 in the model frame.
        density_original: float64 (h, w) density map, sums to 1.
        fixation_original: bool (h, w) fixation map.
        geometry: maps model-frame predictions back (Geometry.map_to_original).
        image_path: the stimulus file.
    """

    name: str
    category: object
    image_model: np.ndarray
    density_original: np.ndarray
    fixation_original: np.ndarray
    geometry: geometry.Geometry
    image_path: str = None


def get_reader(dataset):
    """The reader module for "salicon", "mit1003" or "cat2000"."""
    if dataset not in READERS:
        raise ValueError(f"dataset must be one of {sorted(READERS)}, got {dataset!r}")
    return READERS[dataset]


def load_sample(reader, record):
    """Decodes one record: (uint8 image (h,w,3), float64 density (h,w) sum 1, rows, cols).

    Raises:
        records.BadSampleError naming the file and the problem.
    """
    image = records.load_rgb(record.image_path)
    size = image.shape[:2]
    density = records.load_density(record.density_path, size)
    rows, cols = reader.read_fixations(record.fixation_path, size)
    return image, density, rows, cols


def iter_eval_samples(dataset, data_dir, split, *, input_size=(480, 640), skip_bad=False,
                      limit=None, report=None):
    """Yields an EvalSample per image of the split, in the reader's order.

    Args:
        dataset: "salicon", "mit1003" or "cat2000".
        data_dir: the dataset's folder as unzipped.
        split: a split with ground truth ("train", "val"; "all" for MIT1003, CAT2000).
        input_size: the model frame (H, W).
        skip_bad: log, count (in `report`) and skip bad samples instead of raising.
        limit: at most this many samples (the first ones).
        report: a records.BadDataReport collecting skipped samples.
    """
    reader = get_reader(dataset)
    if split == "test":
        raise ValueError(f"{dataset} split 'test' has no ground truth to evaluate against")
    samples = reader.list_samples(data_dir, split, skip_bad=skip_bad, report=report)
    for record in samples[:limit]:
        try:
            image, density, rows, cols = load_sample(reader, record)
        except records.BadSampleError as error:
            records.handle_bad(error, skip_bad=skip_bad, report=report)
            continue
        geom = geometry.make_geometry(image.shape[:2], input_size, reader.MODE)
        fixations = np.zeros(image.shape[:2], dtype=bool)
        fixations[rows, cols] = True
        yield EvalSample(
            name=record.name,
            category=record.category,
            image_model=geom.image_to_model(image),
            density_original=density,
            fixation_original=fixations,
            geometry=geom,
            image_path=record.image_path,
        )


def build_dataset(dataset, data_dir, split, *, input_size=(480, 640), batch_size=8,
                  training=False, seed=0, skip_bad=False, cache=False, limit=None,
                  report=None):
    """A batched, prefetched tf.data.Dataset of (image, y_true).

    Args:
        dataset: "salicon", "mit1003" or "cat2000".
        data_dir: the dataset's folder as unzipped.
        split: "train", "val" ("all" for MIT1003/CAT2000); SALICON "test"
            yields image batches only (it has no ground truth).
        input_size: model frame (H, W).
        batch_size: samples per batch (the last batch may be smaller).
        training: shuffle (seeded, reshuffled each epoch) and randomly flip
            image and both target channels together, horizontally.
        seed: seeds the shuffle and the flips (not the MIT1003/CAT2000 split,
            which is fixed).
        skip_bad: log, count and skip bad samples instead of raising.
        cache: False, True (memory) or a file path prefix for tf.data cache.
        limit: use only the first `limit` samples of the split.
        report: a records.BadDataReport to collect skipped samples; one is
            created if not given. Also attached as `dataset.bad_data_report`.

    Returns:
        tf.data.Dataset of (float32 (B, H, W, 3), float32 (B, H, W, 2)).
    """
    import tensorflow as tf

    reader = get_reader(dataset)
    report = records.BadDataReport() if report is None else report
    samples = reader.list_samples(data_dir, split, skip_bad=skip_bad, report=report)[:limit]
    if not samples:
        raise ValueError(f"no usable {dataset} samples in {data_dir!r} split {split!r}")
    input_size = tuple(int(v) for v in input_size)
    has_targets = samples[0].density_path is not None
    decode = _Decoder(reader, samples, input_size, skip_bad, report)

    ds = tf.data.Dataset.range(len(samples))
    if training:
        ds = ds.shuffle(len(samples), seed=seed, reshuffle_each_iteration=True)
    if has_targets:
        ds = ds.map(decode.tf_load, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.filter(lambda image, density, fixations, ok: ok)
        ds = ds.map(decode.tf_to_model, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(decode.tf_load_image, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.filter(lambda image, ok: ok)
        ds = ds.map(decode.tf_image_to_model, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
        if training:
            ds = ds.shuffle(min(len(samples), CACHED_SHUFFLE_BUFFER), seed=seed,
                            reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training and has_targets:
        ds = ds.map(_flip_fn(seed), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds.bad_data_report = report
    return ds


def build_train_val(dataset, data_dir, config, *, skip_bad=False, report=None):
    """(train, val) datasets of one training run: `build_dataset` with a TrainConfig's settings.

    The train split is shuffled and flipped (`training=True`), the val split is not; both
    use `config`'s input_size, batch_size and seed, and share `report`.
    """
    common = dict(input_size=config.input_size, batch_size=config.batch_size, seed=config.seed,
                  skip_bad=skip_bad, report=report)
    return (build_dataset(dataset, data_dir, "train", training=True, **common),
            build_dataset(dataset, data_dir, "val", training=False, **common))


def _flip_fn(seed):
    """Random horizontal flip of image and targets together (one Keras layer)."""
    import keras

    flip = keras.layers.RandomFlip("horizontal", seed=seed, name="train_flip")

    def apply(images, y_true):
        # One call on a dict draws one flip decision per sample and applies it
        # to the image and to the targets (as segmentation masks: density and
        # fixation map). The fixation map is already in the model frame, so a
        # flip moves column c to W - 1 - c exactly. (A dict avoids the copies
        # that stacking into one tensor and splitting it again would cost.)
        flipped = flip({"images": images, "segmentation_masks": y_true}, training=True)
        return flipped["images"], flipped["segmentation_masks"]

    return apply


class _Decoder:
    """Per-sample decoding for tf.data: NumPy loading, then TF resizing."""

    def __init__(self, reader, samples, input_size, skip_bad, report):
        self.reader = reader
        self.samples = samples
        self.input_size = input_size
        self.skip_bad = skip_bad
        self.report = report

    def _load(self, index):
        record = self.samples[int(index)]
        try:
            image, density, rows, cols = load_sample(self.reader, record)
        except records.BadSampleError as error:
            records.handle_bad(error, skip_bad=self.skip_bad, report=self.report)
            empty = np.zeros((1, 1, 3), np.uint8)
            return empty, np.zeros((1, 1, 1), np.float32), np.zeros(self.input_size, np.float32), False
        geom = geometry.make_geometry(image.shape[:2], self.input_size, self.reader.MODE)
        fixations = geom.fixations_to_model(rows, cols).astype(np.float32)
        return image, density[..., None].astype(np.float32), fixations, True

    def tf_load(self, index):
        import tensorflow as tf

        image, density, fixations, ok = tf.numpy_function(
            self._load, [index], [tf.uint8, tf.float32, tf.float32, tf.bool], stateful=False
        )
        image.set_shape([None, None, 3])
        density.set_shape([None, None, 1])
        fixations.set_shape(self.input_size)
        ok.set_shape([])
        return image, density, fixations, ok

    def tf_to_model(self, image, density, fixations, ok):
        import tensorflow as tf

        del ok
        mode = self.reader.MODE
        image = geometry.tf_image_to_model(image, self.input_size, mode)
        # A map, not an image: resized without antialiasing (only images are, as PIL does).
        density = geometry.tf_image_to_model(density, self.input_size, mode, antialias=False)[..., 0]
        density = tf.math.divide_no_nan(density, tf.reduce_sum(density))
        return image, tf.stack([density, fixations], axis=-1)

    def _load_image_only(self, index):
        try:
            return records.load_rgb(self.samples[int(index)].image_path), True
        except records.BadSampleError as error:
            records.handle_bad(error, skip_bad=self.skip_bad, report=self.report)
            return np.zeros((1, 1, 3), np.uint8), False

    def tf_load_image(self, index):
        import tensorflow as tf

        image, ok = tf.numpy_function(
            self._load_image_only, [index], [tf.uint8, tf.bool], stateful=False
        )
        image.set_shape([None, None, 3])
        ok.set_shape([])
        return image, ok

    def tf_image_to_model(self, image, ok):
        del ok
        return geometry.tf_image_to_model(image, self.input_size, self.reader.MODE)
