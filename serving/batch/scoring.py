"""Batch scoring of an image collection: the library behind `python -m serving.batch_score`.

Pipeline: sorted file list → this shard's share → skip images whose outputs all
exist (resume) → tf.data (parallel read + decode + geometry to the model frame,
undecodable files dropped by `ignore_errors` and reported afterwards) →
fixed-size global batches (padded, so every replica gets a full share) →
`strategy.run` on every local GPU (MirroredStrategy) or the CPU → each map taken
back to its image's original size → written by a thread pool, every file atomically.

A summary (counts, failures with reasons, throughput) and the configuration
actually used are written as JSON next to the outputs, also when the run is
interrupted.
"""

import collections
import concurrent.futures
import dataclasses
import io
import os
import time

import numpy as np

from keras_emlnet import atomic_files
from keras_emlnet import image_files
from keras_emlnet.inference.visualize import map_to_uint8, overlay
from serving.batch import files as batch_files
from serving.batch.pipeline import describe_unreadable, image_dataset, make_strategy, strategy_devices

FORMATS = ("png", "npy", "both")
OVERLAY_SUFFIX = "_overlay.jpg"
OVERLAY_JPEG_QUALITY = 90
# Maps kept in memory waiting for the writer threads, in global batches.
MAX_BATCHES_IN_FLIGHT = 4


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """Settings of one batch-scoring run (recorded in its config file).

    Attributes:
        model: `.keras` file or SavedModel folder.
        images: folder (recursive) or glob pattern.
        out: output folder.
        format: "png" (8-bit, min-max), "npy" (float32 in the model's output
            mode) or "both".
        overlays: also write `<name>_overlay.jpg` (viridis heatmap over the image, opacity rising with saliency).
        batch_size: images per replica per step.
        precision: "float32", "bfloat16" or "float16" (`.keras` models only).
        shard_index, num_shards: this run scores items shard_index,
            shard_index + num_shards, ... of the sorted collection.
        writer_threads: threads encoding and writing outputs.
        max_image_pixels: images whose header declares more pixels are
            reported and skipped, never decoded; None = $EMLNET_MAX_IMAGE_PIXELS
            or 50 M (`keras_emlnet.image_files`), 0 = no limit.
    """

    model: str
    images: str
    out: str
    format: str = "png"
    overlays: bool = False
    batch_size: int = 8
    precision: str = "float32"
    shard_index: int = 0
    num_shards: int = 1
    writer_threads: int = 4
    max_image_pixels: int = None

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.writer_threads < 1:
            raise ValueError(f"writer_threads must be >= 1, got {self.writer_threads}")
        batch_files.shard_jobs([], self.shard_index, self.num_shards)  # validates

    @property
    def suffixes(self):
        """Output kind → file suffix, for every output one image gets."""
        suffixes = {}
        if self.format in ("png", "both"):
            suffixes["png"] = ".png"
        if self.format in ("npy", "both"):
            suffixes["npy"] = ".npy"
        if self.overlays:
            suffixes["overlay"] = OVERLAY_SUFFIX
        return suffixes


def summary_path(out, shard_index, num_shards):
    """`batch_score_summary.json`, or `...summary.shard-00002-of-00004.json` when sharded."""
    return os.path.join(out, "batch_score_summary" + _shard_tag(shard_index, num_shards) + ".json")


def config_path(out, shard_index, num_shards):
    """`batch_score_config.json`, per shard like `summary_path`."""
    return os.path.join(out, "batch_score_config" + _shard_tag(shard_index, num_shards) + ".json")


def _shard_tag(shard_index, num_shards):
    return "" if num_shards == 1 else f".shard-{shard_index:05d}-of-{num_shards:05d}"


def output_paths(job, config):
    """Output kind → path for one job (raises batch_files.UnsafeNameError)."""
    return {
        kind: batch_files.output_path(config.out, job.name, suffix)
        for kind, suffix in config.suffixes.items()
    }


def is_done(job, config):
    """True when every output of `job` exists (outputs are atomic, so existing = complete)."""
    try:
        return all(os.path.exists(p) for p in output_paths(job, config).values())
    except batch_files.UnsafeNameError:
        return False


def score_collection(config, *, predictor=None, strategy=None, make_progress=None, logger=None):
    """Scores this shard of the collection; returns the summary dict it also writes.

    Args:
        config: ScoreConfig.
        predictor: a loaded keras_emlnet.inference.predictor.SaliencyPredictor (default:
            loaded from config.model inside `strategy`'s scope).
        strategy: tf.distribute strategy (default: `make_strategy()`).
        make_progress: called once with the number of images to score (this
            shard, less those already done); returns a callable that is called
            with the number of images just finished (outputs written or
            failure recorded), from the calling thread. The CLI's progress bar.
        logger: optional callable(str) for notable events (failures).

    Raises:
        FileNotFoundError: if no images match `config.images`.
        KeyboardInterrupt and errors from writing (disk full) propagate after
        the summary has been written with "interrupted": true.
    """
    import tensorflow as tf

    from keras_emlnet.inference.predictor import load_predictor

    start = time.perf_counter()
    log = logger or (lambda message: None)
    root, paths = batch_files.discover_images(config.images, exclude_dir=config.out)
    entries = batch_files.shard_jobs(
        batch_files.plan_entries(root, paths), config.shard_index, config.num_shards
    )
    jobs = [e for e in entries if isinstance(e, batch_files.ImageJob)]
    failures = [
        {"source": e.source, "error": e.reason} for e in entries if isinstance(e, batch_files.Rejected)
    ]
    pending = [job for job in jobs if not is_done(job, config)]
    atomic_files.remove_stale_temp_files(config.out, recursive=True)  # left by a run killed mid-write
    strategy = strategy or make_strategy()
    if predictor is None:
        predictor = load_predictor(config.model, precision=config.precision, strategy=strategy)
    summary = {
        "images": len(entries),
        "already_done": len(jobs) - len(pending),
        "scored": 0,
        "failed": failures,
        "interrupted": True,
        "replicas": strategy.num_replicas_in_sync,
    }
    atomic_files.write_json_atomic(
        config_path(config.out, config.shard_index, config.num_shards),
        {
            **dataclasses.asdict(config),
            **predictor.config(),
            "replicas": strategy.num_replicas_in_sync,
            "devices": strategy_devices(strategy),
            "tensorflow": tf.__version__,
        },
    )
    for failure in failures:
        log(f"skipped {failure['source']}: {failure['error']}")
    produced = set()
    on_progress = make_progress(len(pending)) if make_progress else None
    try:
        if pending:
            _run(config, predictor, strategy, pending, produced, summary, on_progress, log)
        unread = [i for i in range(len(pending)) if i not in produced]
        for i in unread:
            failure = {"source": pending[i].source,
                       "error": describe_unreadable(pending[i].source, max_image_pixels=config.max_image_pixels)}
            log(f"skipped {failure['source']}: {failure['error']}")
            summary["failed"].append(failure)
        if on_progress and unread:
            on_progress(len(unread))
        summary["interrupted"] = False
    finally:
        elapsed = time.perf_counter() - start
        summary["elapsed_s"] = round(elapsed, 3)
        summary["images_per_s"] = round(summary["scored"] / elapsed, 3) if elapsed > 0 else 0.0
        atomic_files.write_json_atomic(
            summary_path(config.out, config.shard_index, config.num_shards), summary
        )
    return summary


def _run(config, predictor, strategy, pending, produced, summary, on_progress, log):
    import tensorflow as tf

    global_batch = config.batch_size * strategy.num_replicas_in_sync
    dataset = image_dataset(
        [job.source for job in pending], predictor.input_size, predictor.resize_mode, global_batch,
        max_image_pixels=config.max_image_pixels,
    )

    @tf.function
    def step(images):
        return strategy.run(predictor.predict, args=(images,))

    def on_host(values):
        # Replica shares in replica order: together, the global batch in dataset order.
        parts = strategy.experimental_local_results(values)
        return np.concatenate([np.asarray(part) for part in parts], axis=0)

    in_flight = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(config.writer_threads) as pool:
        try:
            for index, original_size, images in strategy.experimental_distribute_dataset(dataset):
                maps = step(images)
                index, original_size = on_host(index), on_host(original_size)
                maps = strategy.experimental_local_results(maps)
                per_replica = len(index) // len(maps)
                for position, item in enumerate(index):
                    if item < 0:
                        continue
                    produced.add(int(item))
                    replica_map = maps[position // per_replica][position % per_replica]
                    original = predictor.to_original(replica_map, original_size[position])
                    in_flight.append(
                        pool.submit(_write_outputs, pending[item], original.numpy()[..., 0], config,
                                    predictor.output_mode)
                    )
                while len(in_flight) > MAX_BATCHES_IN_FLIGHT * global_batch or (
                    in_flight and in_flight[0].done()
                ):
                    _finish(in_flight.popleft(), summary, on_progress, log)
            while in_flight:
                _finish(in_flight.popleft(), summary, on_progress, log)
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise


def _finish(future, summary, on_progress, log):
    failure = future.result()  # re-raises write errors such as a full disk
    if failure is None:
        summary["scored"] += 1
    else:
        log(f"skipped {failure['source']}: {failure['error']}")
        summary["failed"].append(failure)
    if on_progress:
        on_progress(1)


class UnreadableImageError(ValueError):
    """The source image could not be read again for its overlay."""


def _write_outputs(job, saliency_map, config, output_mode):
    """Writes one image's outputs atomically; returns a failure dict or None."""

    def read_image():
        # Header checked against the limit before decoding, EXIF applied (as
        # the map's pipeline did); PIL's DecompressionBombError cannot escape
        # (it crashed every rerun at the same file, issue 19).
        try:
            return image_files.decode_rgb(job.source, limit=config.max_image_pixels)
        except image_files.ImageTooLargeError:
            raise
        except (OSError, ValueError, SyntaxError) as error:  # what PIL raises for a bad image
            raise UnreadableImageError(f"cannot read the image for its overlay: {error}") from error

    try:
        paths = output_paths(job, config)
        # Every output is encoded before any is written: a failure writes nothing.
        for kind, data in encode_outputs(paths, saliency_map, output_mode, read_image).items():
            atomic_files.write_bytes_atomic(paths[kind], data)
    except (batch_files.UnsafeNameError, image_files.ImageTooLargeError, UnreadableImageError) as error:
        return {"source": job.source, "error": str(error)}
    return None


def encode_outputs(kinds, saliency_map, output_mode, read_image):
    """One image's output files as bytes: {kind: bytes} for each of `kinds`, in write order.

    The one encoding of batch scoring's files, shared with the Beam pipeline
    (serving/beam), which writes them through Beam's filesystems.

    Args:
        kinds: output kinds among "npy" (float32 map in the output mode), "png"
            (8-bit min-max of the map, of exp(map) for log_density) and "overlay"
            (JPEG heatmap over the image); `ScoreConfig.suffixes`' keys.
        saliency_map: (h, w) map at the image's original size.
        output_mode: the model's output mode.
        read_image: callable returning the original image, RGB uint8 (h, w, 3);
            called only for an overlay.
    """
    from PIL import Image

    encoded = {}
    if "npy" in kinds:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(saliency_map).astype(np.float32))
        encoded["npy"] = buffer.getvalue()
    picture = np.exp(saliency_map) if output_mode == "log_density" else saliency_map
    if "png" in kinds:
        buffer = io.BytesIO()
        Image.fromarray(map_to_uint8(picture)).save(buffer, format="PNG")
        encoded["png"] = buffer.getvalue()
    if "overlay" in kinds:
        buffer = io.BytesIO()
        Image.fromarray(overlay(read_image(), picture)).save(
            buffer, format="JPEG", quality=OVERLAY_JPEG_QUALITY
        )
        encoded["overlay"] = buffer.getvalue()
    return encoded
