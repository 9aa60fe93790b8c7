"""The tf.data training pipeline and the evaluation iterator over the datasets.

Training/validation batches are ``(image, y_true)``: the image in the model
frame (float32 RGB 0–255, (B, H, W, 3)) and y_true (B, H, W, 2) = [density map
summing to 1, binary fixation map] — the layout `EMLLoss` takes. Fixations are
mapped point by point from their original coordinates into the model frame
(Geometry.fixations_to_model), never by resizing a binary image.

`build_dataset` reads a dataset folder or its TFRecord shards
(`keras_emlnet.data.tfrecords`) and gives the same examples from both. Every
per-step operation is a TensorFlow op in the tf.data graph (`decoding`:
`tf.io.decode_jpeg/png`, EXIF orientation, geometry, targets, flips), run on
parallel tf.data threads with AUTOTUNE; what Python must parse (.mat
fixations) is parsed once, when the folder is listed
(`list_checked_samples`) or converted. Training order and flips are a
function of (seed, epoch) (`EpochOrder`), so a resumed run replays nothing.
Evaluation (`iter_eval_samples`) yields the targets at the original size and
the Geometry that maps a model-frame prediction back, as the benchmark scores
at the original resolution.
"""

import dataclasses

import numpy as np

from keras_emlnet import image_files
from keras_emlnet.data import records, tfrecords
from keras_emlnet.data.readers import get_reader, load_sample
from keras_emlnet.models import geometry

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
    if tfrecords.is_shards_dir(data_dir):
        yield from _iter_shard_eval_samples(reader, tfrecords.open_split(data_dir, split, dataset), input_size,
                                            limit, report)
        return
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


def _iter_shard_eval_samples(reader, shards, input_size, limit, report):
    """EvalSamples from TFRecord shards (checked when converted; the conversion's bad samples reported)."""
    if report is not None:
        for path, problem in shards.bad_samples.items():
            report.add(records.BadSampleError(path, problem))
    for record in tfrecords.iter_records(shards, limit=limit):
        geom = geometry.make_geometry(record.image.shape[:2], input_size, reader.MODE)
        fixations = np.zeros(record.image.shape[:2], dtype=bool)
        fixations[record.rows, record.cols] = True
        yield EvalSample(
            name=record.name,
            category=record.category,
            image_model=geom.image_to_model(record.image),
            density_original=record.density,
            fixation_original=fixations,
            geometry=geom,
            image_path=record.image_path,
        )


def build_dataset(dataset, data_dir, split, *, input_size=(480, 640), batch_size=8,
                  training=False, seed=0, skip_bad=False, cache=False, limit=None,
                  report=None):
    """A batched, prefetched tf.data.Dataset of (image, y_true), decoded in the graph.

    Args:
        dataset: "salicon", "mit1003" or "cat2000".
        data_dir: the dataset's folder as unzipped, or a folder of TFRecord
            shards (`python -m keras_emlnet.data.to_tfrecord`): both give the
            same examples.
        split: "train", "val" ("all" for MIT1003/CAT2000); SALICON "test"
            yields image batches only (it has no ground truth).
        input_size: model frame (H, W).
        batch_size: samples per batch (the last batch of an epoch may be smaller).
        training: shuffle and randomly flip image and both target channels
            together, horizontally; each iteration of the dataset is a new
            epoch. `fit` uses `dataset.epoch_stream` instead, whose order is a
            function of (seed, epoch) so that a resumed run continues it.
        seed: seeds the order and the flips (not the MIT1003/CAT2000 split,
            which is fixed).
        skip_bad: log, count and skip bad samples instead of raising.
        cache: False, True (memory) or a file path prefix for tf.data cache.
        limit: use only the first `limit` samples of the split.
        report: a records.BadDataReport to collect skipped samples; one is
            created if not given. Also attached as `dataset.bad_data_report`.

    Returns:
        tf.data.Dataset of (float32 (B, H, W, 3), float32 (B, H, W, 2)), with
        attributes `bad_data_report`, `num_examples`, `batches_per_epoch` and,
        when `training`, `epoch_stream(start_step=0)`: an endless dataset of
        epochs e, e + 1, ... each batched on its own, starting `start_step`
        batches into the run (see `EpochOrder`).
    """
    reader = get_reader(dataset)
    report = records.BadDataReport() if report is None else report
    input_size = tuple(int(v) for v in input_size)
    if tfrecords.is_shards_dir(data_dir):
        source = _ShardSource(tfrecords.open_split(data_dir, split, dataset), limit, report)
    else:
        source = _FolderSource(list_checked_samples(reader, data_dir, split, skip_bad=skip_bad, report=report,
                                                    limit=limit))
    if not source.num_examples:
        raise ValueError(f"no usable {dataset} samples in {data_dir!r} split {split!r}")
    examples = EpochOrder(source, reader.MODE, input_size, batch_size, seed=seed, skip_bad=skip_bad,
                          cache=cache)
    ds = examples.training_passes() if training else examples.ordered()
    ds.bad_data_report = report
    ds.num_examples = source.num_examples
    ds.batches_per_epoch = examples.batches_per_epoch
    if training:
        ds.epoch_stream = examples.stream
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


# ------------------------------------------------------------------ listing (folder path)


@dataclasses.dataclass(frozen=True)
class ListedSample:
    """A sample whose files were checked when listed: record, upright size, fixation pixels."""

    record: records.SampleRecord
    size: tuple
    rows: np.ndarray = None
    cols: np.ndarray = None


def read_image_header(path):
    """The image's header (`image_files.read_header`), errors as BadSampleError naming the file."""
    try:
        return image_files.read_header(path)
    except image_files.ImageTooLargeError as error:
        raise records.BadSampleError(path, f"too large ({error.pixels:,} pixels > {error.limit:,})") from error
    except (OSError, ValueError, SyntaxError) as error:  # PIL's header errors
        raise records.BadSampleError(path, f"unreadable image ({error})") from error


def list_checked_samples(reader, data_dir, split, *, skip_bad=False, report=None, limit=None):
    """The split's samples with everything checkable without decoding pixels checked once.

    Per sample: the image header (readable, within the pixel limit; its EXIF
    orientation gives the upright size), the density map's header (same
    size), and the fixations, parsed here once (.mat or binary map) into
    0-based pixels and checked against the size. A bad sample raises
    BadSampleError naming the file, or with `skip_bad` is reported and left
    out. What only a full decode finds (a corrupt body behind a good header)
    surfaces in the pipeline instead.

    Returns:
        A list of ListedSample, in the reader's order.
    """
    listed = []
    for record in reader.list_samples(data_dir, split, skip_bad=skip_bad, report=report)[:limit]:
        try:
            size = read_image_header(record.image_path).oriented_size
            if record.density_path is None:
                listed.append(ListedSample(record, size))
                continue
            density = read_image_header(record.density_path)
            records.check_size(record.density_path, (density.height, density.width), size)
            rows, cols = reader.read_fixations(record.fixation_path, size)
        except records.BadSampleError as error:
            records.handle_bad(error, skip_bad=skip_bad, report=report)
            continue
        listed.append(ListedSample(record, size, rows, cols))
    return listed


# ------------------------------------------------------------------ sources of raw samples


class _FolderSource:
    """Raw samples read from the dataset folder's files (paths and fixations from the listing)."""

    def __init__(self, listed):
        self.listed = listed
        self.num_examples = len(listed)
        self.has_targets = bool(listed) and listed[0].rows is not None

    def _tensors(self):
        if getattr(self, "_cached_tensors", None) is None:
            self._cached_tensors = self._make_tensors()
        return self._cached_tensors

    def _make_tensors(self):
        import tensorflow as tf

        # Eager constants, even when first asked for while a tf.data function is traced:
        # every function built over this source captures the same ones.
        with tf.init_scope():
            listed = self.listed
            tensors = {
                "name": tf.constant([s.record.image_path for s in listed]),
                "size": tf.constant([s.size for s in listed], tf.int64),
            }
            if self.has_targets:
                tensors["density"] = tf.constant([s.record.density_path for s in listed])
                # One ragged tensor of all fixations, int32: a SALICON image has ~10^3 points.
                tensors["rows"] = tf.RaggedTensor.from_row_lengths(
                    np.concatenate([s.rows for s in listed]).astype(np.int32), [len(s.rows) for s in listed])
                tensors["cols"] = tf.RaggedTensor.from_row_lengths(
                    np.concatenate([s.cols for s in listed]).astype(np.int32), [len(s.cols) for s in listed])
        return tensors

    def _raw(self, index):
        import tensorflow as tf

        tensors = self._tensors()
        raw = {"name": tensors["name"][index], "size": tensors["size"][index],
               "image": tf.io.read_file(tensors["name"][index])}
        if self.has_targets:
            raw["density"] = tf.io.read_file(tensors["density"][index])
            raw["rows"] = tensors["rows"][index]
            raw["cols"] = tensors["cols"][index]
        return raw

    def ordered(self):
        """Dataset of sample indices in the reader's order (reading happens in `raw`)."""
        import tensorflow as tf

        return tf.data.Dataset.range(self.num_examples)

    def shuffled(self, seed):
        """Indices in the epoch order drawn from `seed` (int64 [2]): a full permutation."""
        import tensorflow as tf

        order = tf.random.experimental.stateless_shuffle(tf.range(self.num_examples, dtype=tf.int64), seed)
        return tf.data.Dataset.from_tensor_slices(order)

    def raw(self, item):
        return self._raw(item)


class _ShardSource:
    """Raw samples read from TFRecord shards (`tfrecords`): interleaved across shards when shuffled."""

    # Records hold encoded bytes (~0.1 MB a SALICON sample): 512 is ~64 MB of buffer.
    SHUFFLE_BUFFER = 512
    CYCLE_LENGTH = 8

    def __init__(self, shards, limit, report):
        self.shards = shards
        self.limit = limit
        self.num_examples = shards.examples if limit is None else min(limit, shards.examples)
        self.has_targets = shards.has_targets
        for path, problem in shards.bad_samples.items():  # left out when converting: say so here too
            report.add(records.BadSampleError(path, problem))

    def _records(self):
        import tensorflow as tf

        return tf.data.TFRecordDataset(list(self.shards.files))

    def ordered(self):
        ds = self._records()
        return ds if self.limit is None else ds.take(self.limit)

    def shuffled(self, seed):
        import tensorflow as tf

        buffer_seed = tf.cast(tf.random.experimental.stateless_fold_in(seed, 1)[0], tf.int64)
        if self.limit is not None:
            return self.ordered().shuffle(self.num_examples, seed=buffer_seed)
        files = tf.random.experimental.stateless_shuffle(tf.constant(list(self.shards.files)), seed)
        ds = tf.data.Dataset.from_tensor_slices(files).interleave(
            tf.data.TFRecordDataset, cycle_length=min(len(self.shards.files), self.CYCLE_LENGTH), block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
        )
        return ds.shuffle(min(self.num_examples, self.SHUFFLE_BUFFER), seed=buffer_seed)

    def raw(self, item):
        return tfrecords.tf_parse(item)


# ------------------------------------------------------------------ the pipeline


class EpochOrder:
    """Batches of one source whose order and flips are a function of (seed, epoch) only.

    Epoch e's order: a permutation drawn from the stateless seed (seed, e)
    (folder), or the shards in that seed's order, interleaved, through a
    shuffle buffer seeded from it (shards); sample k of the epoch is flipped
    iff a uniform drawn from (seed, e, k) is below 1/2. Nothing depends on
    what ran before in the process, so a run resumed at step s
    (`stream(s)`) sees exactly the batches an uninterrupted run saw from
    step s on, and every worker of a multi-worker run builds the same stream.
    """

    def __init__(self, source, mode, input_size, batch_size, *, seed, skip_bad, cache):
        self.source = source
        self.mode = mode
        self.input_size = input_size
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.skip_bad = skip_bad
        self.cache = cache
        self.batches_per_epoch = -(-source.num_examples // self.batch_size)
        self._cached = None

    def _decode(self, item):
        from keras_emlnet.data import decoding

        raw = self.source.raw(item)
        if self.source.has_targets:
            return decoding.tf_sample_to_model(raw, self.input_size, self.mode)
        return decoding.tf_image_to_model(raw, self.input_size, self.mode)

    def _decoded(self, ds, *, flip_seed=None):
        """`ds`'s items decoded; with `flip_seed`, items are (position, item), flipped in the same map."""
        import tensorflow as tf

        def decode(*element):
            if flip_seed is None:
                return self._decode(element[0])
            example = self._decode(element[1])
            if not self.source.has_targets:
                return example
            return decoding_flip(flip_seed, element[0], *example)

        # One map for decoding and flipping, directly followed by batch (tf.data fuses
        # the two into one parallel map-and-batch): a separate flip map measured slower.
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        # Checked when listed or converted; what remains (a corrupt body behind a good
        # header) is logged by tf.data and left out.
        return ds.ignore_errors(log_warning=True) if self.skip_bad else ds

    def _decoded_in_order(self):
        """Every sample decoded in source order (cached when `cache` is set)."""
        if self._cached is None:
            ds = self._decoded(self.source.ordered())
            self._cached = ds.cache(self.cache if isinstance(self.cache, str) else "") if self.cache else ds
        return self._cached

    def ordered(self):
        """One pass in the source's order, no flips (evaluation, validation)."""
        import tensorflow as tf

        return self._decoded_in_order().batch(self.batch_size).prefetch(tf.data.AUTOTUNE)

    def epoch_seed(self, epoch):
        """The stateless seed (int64 [2]) of `epoch` (a scalar, possibly a tensor)."""
        import tensorflow as tf

        return tf.stack([tf.constant(self.seed, tf.int64), tf.cast(epoch, tf.int64)])

    def epoch(self, epoch, skip=0):
        """Epoch `epoch`'s batches, starting `skip` samples into it (a multiple of the batch size)."""
        import tensorflow as tf

        seed = self.epoch_seed(epoch)
        if self.cache:
            # Decoded samples from the cache, shuffled in a window (a full-size buffer
            # would hold a second copy of the cached dataset).
            buffer = min(self.source.num_examples, CACHED_SHUFFLE_BUFFER)
            ds = self._decoded_in_order().shuffle(
                buffer, seed=tf.cast(tf.random.experimental.stateless_fold_in(seed, 2)[0], tf.int64))
            ds = ds.skip(skip).enumerate(tf.cast(skip, tf.int64))
            if self.source.has_targets:
                ds = ds.map(lambda position, image, y_true: decoding_flip(seed, position, image, y_true),
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            else:
                ds = ds.map(lambda position, image: image)
        else:
            # Skipping happens before decoding: resuming costs no decode.
            ds = self.source.shuffled(seed).skip(skip).enumerate(tf.cast(skip, tf.int64))
            ds = self._decoded(ds, flip_seed=seed)
        return ds.batch(self.batch_size)

    def training_passes(self):
        """One shuffled, flipped epoch per iteration (each iteration draws a new epoch key)."""
        import tensorflow as tf

        keys = tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True).take(1)
        return keys.flat_map(self.epoch).prefetch(tf.data.AUTOTUNE)

    def stream(self, start_step=0):
        """Epochs e, e + 1, ... without end, from `start_step` batches into the run.

        Epoch e = start_step // batches_per_epoch, entered (start_step %
        batches_per_epoch) batches in; each epoch is batched on its own (its
        last batch may be smaller), as a one-pass-per-epoch run sees them.
        """
        import tensorflow as tf

        first, offset = divmod(int(start_step), self.batches_per_epoch)
        skip = offset * self.batch_size

        def one_epoch(epoch):
            return self.epoch(epoch, tf.where(tf.equal(epoch, first), tf.constant(skip, tf.int64), 0))

        return tf.data.Dataset.range(first, 2**62).flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)


def decoding_flip(seed, position, image, y_true):
    """The flip of sample `position` of the epoch with stateless seed `seed`."""
    import tensorflow as tf

    from keras_emlnet.data import decoding

    return decoding.tf_flip(tf.random.experimental.stateless_fold_in(seed, position), image, y_true)
