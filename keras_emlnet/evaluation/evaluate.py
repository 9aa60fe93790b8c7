"""Benchmark evaluation: nine metrics per image at the original resolution, and the tables.

`evaluate` scores a split (the metric keys of `keras_emlnet.evaluation.columns`, in table
order); `evaluate_and_write` is the whole run of train.evaluate and the demo's evaluate stage:
score, write every file of `keras_emlnet.evaluation.tables` and config.json, format the table.

Per image (`score_map`), every row (the model and each baseline) is scored
against the same ground truth with the same random draws:
- sAUC's other map is the union of the fixations of `SHUFFLED_OTHER_IMAGES`
  other images of the same dataset split, chosen by `choose_other_indices`
  (seeded by the run seed and the image's index) — as the benchmark does.
  Other images of a different size contribute their fixations scaled to this
  image's frame (`other_fixation_map`), never a resized binary map.
- IG's baseline map is the center-bias Gaussian (`baselines.center_bias_map`).
- The metrics' own sampling (AUC-Judd jitter, AUC-Borji and sAUC splits) is
  seeded with `metric_seed(seed, index)`.
A table row is the mean over images (NaN scores, e.g. AUC-Borji of an image
with one fixation, are left out of the mean, and counted).
"""

import dataclasses
import os

import numpy as np

from keras_emlnet import atomic_files
from keras_emlnet.evaluation.baselines import DEFAULT_CENTER_BIAS_SIGMA, FolderMaps, center_bias_map
from keras_emlnet.evaluation.columns import METRIC_KEYS
from keras_emlnet.evaluation.tables import format_postprocessing, format_text, summarize, write_results
from keras_emlnet.metrics import suite

SHUFFLED_OTHER_IMAGES = 10


def metric_seed(seed, index):
    """The seed of the metrics' random draws for image `index` of a run seeded `seed`."""
    return int(seed) * 1_000_003 + int(index)


def choose_other_indices(num_images, index, *, count=SHUFFLED_OTHER_IMAGES, seed=0):
    """Indices of `count` other images (never `index`), sorted, drawn without replacement.

    Deterministic in (seed, index); fewer when the split has fewer other images.
    """
    if not 0 <= index < num_images:
        raise ValueError(f"index {index} is outside [0, {num_images})")
    others = np.delete(np.arange(num_images), index)
    rng = np.random.default_rng([int(seed), int(index)])
    chosen = rng.choice(others, size=min(count, len(others)), replace=False)
    return sorted(int(i) for i in chosen)


def other_fixation_map(shape, fixation_points):
    """Union of other images' fixations in a frame of `shape`, as a bool map.

    Args:
        shape: (h, w) of the image being scored.
        fixation_points: iterable of (rows, cols, (h_j, w_j)): 0-based pixel
            fixations of another image and that image's size. Each point's
            pixel centre is scaled to this frame: r' = floor((r + 0.5) h / h_j).
    """
    height, width = (int(v) for v in shape)
    other = np.zeros((height, width), dtype=bool)
    for rows, cols, (other_h, other_w) in fixation_points:
        rows = np.asarray(rows, dtype=np.float64)
        cols = np.asarray(cols, dtype=np.float64)
        r = np.clip(np.floor((rows + 0.5) * height / other_h).astype(np.int64), 0, height - 1)
        c = np.clip(np.floor((cols + 0.5) * width / other_w).astype(np.int64), 0, width - 1)
        other[r, c] = True
    return other


def score_map(saliency_map, density_map, fixation_map, other_map, baseline_map, *, seed):
    """All nine metrics of one saliency map (any size) against original-size ground truth.

    `keras_emlnet.metrics.suite.score_all`: the values of the nine `keras_emlnet.metrics`
    functions, with the map resized once and shared work done once, on two threads for large maps.

    Returns:
        {metric key: float}, keys in METRIC_KEYS order.
    """
    fixations = np.asarray(fixation_map, dtype=bool)
    return suite.score_all(
        saliency_map, fixations, density_map, other_map, baseline_map, names=METRIC_KEYS, seed=seed
    )


CENTER_BIAS_ROW = "center bias"


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What one evaluation run scores, and how (recorded in its config.json).

    Attributes:
        dataset: "salicon", "mit1003" or "cat2000".
        data_dir: the dataset's folder.
        split: split with ground truth (usually "val").
        model_name: the model's row label.
        baseline_maps: optional folder of another model's maps (a row).
        baseline_name: that row's label (default: the folder's name).
        center_bias_sigma: sigma of the center-bias row, fraction of h and w.
        shuffled_others: images whose fixations make sAUC's other map.
        seed: seeds the choice of other images and the metrics' sampling.
        limit: evaluate only the first `limit` images of the split.
        batch_size: images per model call.
        skip_bad: report and skip bad samples instead of stopping.
    """

    dataset: str
    data_dir: str
    split: str = "val"
    model_name: str = "model"
    baseline_maps: str = None
    baseline_name: str = None
    center_bias_sigma: float = DEFAULT_CENTER_BIAS_SIGMA
    shuffled_others: int = SHUFFLED_OTHER_IMAGES
    seed: int = 0
    limit: int = None
    batch_size: int = 8
    skip_bad: bool = False

    def row_names(self):
        """Table rows in order: the model, the center bias, the folder baseline if any."""
        rows = [self.model_name, CENTER_BIAS_ROW]
        if self.baseline_maps:
            rows.append(self.baseline_name or os.path.basename(os.path.normpath(self.baseline_maps)))
        if len(set(rows)) != len(rows):
            raise ValueError(f"row names must differ, got {rows}")
        return rows


@dataclasses.dataclass
class EvalResults:
    """Scores of one run.

    Attributes:
        rows: row names in table order.
        per_image: one dict per (image, row): "name", "category", "row", metrics.
        summary: means per row (`tables.summarize`).
        per_category: means per (category, row) for CAT2000, else None.
        skipped: {path: problem} of bad samples left out (skip_bad).
    """

    rows: list
    per_image: list
    summary: list
    per_category: object
    skipped: dict


def collect_fixation_points(dataset, data_dir, split, *, limit=None, skip_bad=False, report=None):
    """{(category, name): (rows, cols, (h, w))} for the split's images, in dataset order.

    Reads only fixation files and image headers (not pixels): the pool that
    sAUC's other maps are drawn from.
    """
    from keras_emlnet import image_files
    from keras_emlnet.data import pipeline, records

    reader = pipeline.get_reader(dataset)
    points = {}
    for record in reader.list_samples(data_dir, split, skip_bad=skip_bad, report=report)[:limit]:
        try:
            try:
                # The upright size, as records.load_rgb decodes the image (EXIF applied).
                height, width = image_files.read_header(record.image_path).oriented_size
            except image_files.ImageTooLargeError as error:
                raise records.BadSampleError(
                    record.image_path, f"too large ({error.pixels:,} pixels > {error.limit:,})") from error
            except (OSError, ValueError, SyntaxError) as error:
                raise records.BadSampleError(record.image_path, f"unreadable image: {error}") from error
            rows, cols = reader.read_fixations(record.fixation_path, (height, width))
        except records.BadSampleError as error:
            records.handle_bad(error, skip_bad=skip_bad, report=report)
            continue
        points[(record.category, record.name)] = (np.asarray(rows), np.asarray(cols), (height, width))
    return points


def evaluate(predictor, config, *, make_progress=None):
    """Scores `predictor`, the center bias and the optional folder baseline on a split.

    Args:
        predictor: a keras_emlnet.inference.predictor.SaliencyPredictor.
        config: EvalConfig.
        make_progress: called with the number of images; returns a callable
            taking the number of images just scored (the CLI's progress bar).

    Returns:
        EvalResults.
    """
    from keras_emlnet.data import pipeline, records
    from keras_emlnet.inference.predictor import make_to_original

    rows = config.row_names()
    folder = FolderMaps(config.baseline_maps) if config.baseline_maps else None
    report = records.BadDataReport()
    points = collect_fixation_points(
        config.dataset, config.data_dir, config.split,
        limit=config.limit, skip_bad=config.skip_bad, report=report,
    )
    keys = list(points)
    index_of = {key: i for i, key in enumerate(keys)}
    if not keys:
        raise ValueError(f"{config.dataset} split {config.split!r} in {config.data_dir} has no images")
    progress = make_progress(len(keys)) if make_progress else (lambda count: None)
    to_original = {}  # geometry mode -> traced function (the dataset's protocol decides the mode)
    per_image = []
    samples = pipeline.iter_eval_samples(
        config.dataset, config.data_dir, config.split, input_size=predictor.input_size,
        skip_bad=config.skip_bad, limit=config.limit, report=report,
    )
    for chunk in _chunks(samples, config.batch_size):
        maps = predictor.predict(np.stack([s.image_model for s in chunk]).astype(np.float32))
        for sample, model_map in zip(chunk, np.asarray(maps)):
            key = (sample.category, sample.name)
            if key not in index_of:  # bad in pass 1 only: nothing to compare
                continue
            index = index_of[key]
            mode = sample.geometry.mode
            if mode not in to_original:
                to_original[mode] = make_to_original(mode, predictor.output_mode)
            shape = sample.fixation_original.shape
            model_map = to_original[mode](model_map, np.asarray(shape, np.int32)).numpy()[..., 0]
            if predictor.output_mode == "log_density":
                model_map = np.exp(model_map)  # score the density, not its log
            center = center_bias_map(shape, sigma_fraction=config.center_bias_sigma)
            row_maps = [model_map, center]
            if folder is not None:
                row_maps.append(folder(sample.name, sample.category))
            other = other_fixation_map(
                shape,
                [points[keys[j]] for j in choose_other_indices(
                    len(keys), index, count=config.shuffled_others, seed=config.seed)],
            )
            for row, saliency_map in zip(rows, row_maps):
                scores = score_map(
                    saliency_map, sample.density_original, sample.fixation_original, other,
                    center, seed=metric_seed(config.seed, index),
                )
                per_image.append({"name": sample.name, "category": sample.category, "row": row, **scores})
        progress(len(chunk))
    if not per_image:
        raise ValueError(f"no image of {config.dataset} split {config.split!r} could be evaluated")
    per_category = None
    if any(record["category"] is not None for record in per_image):
        per_category = summarize(per_image, rows, group_key="category")
    return EvalResults(rows, per_image, summarize(per_image, rows), per_category, report.problems)


def _chunks(iterable, size):
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclasses.dataclass
class WrittenEvaluation:
    """What `evaluate_and_write` scored and wrote.

    Attributes:
        results: the EvalResults.
        paths: {kind: path} of the written files (write_results).
        text: the table as text, the per-category table below it if any.
    """

    results: object
    paths: dict
    text: str


def row_postprocessing(predictor, config):
    """{row: how its maps were post-processed}: the tables say which post-processing produced each row."""
    rows = config.row_names()
    described = {rows[0]: predictor.postprocessing(), CENTER_BIAS_ROW: "none (a centred Gaussian, not a model)"}
    for row in rows[2:]:
        described[row] = "maps as read from the folder"
    return described


def evaluate_and_write(predictor, config, out_dir, *, make_progress=None):
    """Scores `predictor` on `config`'s split and writes the tables and config.json to `out_dir`.

    config.json records the EvalConfig, the predictor's settings, the output
    folder, the rows and the TensorFlow version; results.json records the
    dataset, split, image count and the bad samples skipped.

    Args:
        predictor: a keras_emlnet.inference.predictor.SaliencyPredictor.
        config: an EvalConfig.
        out_dir: the folder the files go to.
        make_progress: as in `evaluate`.

    Returns:
        A WrittenEvaluation.
    """
    import tensorflow as tf

    atomic_files.remove_stale_temp_files(out_dir)  # left by a run killed mid-write
    results = evaluate(predictor, config, make_progress=make_progress)
    run_config = {
        **dataclasses.asdict(config),
        **predictor.config(),
        "out": out_dir,
        "rows": results.rows,
        "tensorflow": tf.__version__,
    }
    postprocessing = row_postprocessing(predictor, config)
    info = {
        "dataset": config.dataset,
        "split": config.split,
        "images": results.summary[0]["images"],
        "skipped": results.skipped,
        "postprocessing": postprocessing,
    }
    paths = write_results(
        out_dir, results.summary, per_category=results.per_category, per_image=results.per_image,
        info=info, config=run_config, postprocessing=postprocessing,
    )
    text = format_text(results.summary) + "\n" + format_postprocessing(postprocessing)
    if results.per_category:
        text += "\n" + format_text(results.per_category, group_label="category")
    return WrittenEvaluation(results, paths, text)
