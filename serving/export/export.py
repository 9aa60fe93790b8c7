"""Exports an EMLNet `.keras` model as a SavedModel TF Serving loads.

    python -m serving.export --model runs/emlnet/emlnet.keras \
        --export_base exports/emlnet --version 1

writes ``exports/emlnet/1/``:

- ``saved_model.pb`` and ``variables/``: signatures ``serving_default``
  (``image_bytes``) and ``predict_images`` (``images``), both returning
  ``saliency``, ``height`` and ``width`` (see serving/export/saliency_module.py),
  and the non-signature function ``predict_model_size`` (float32 model-size
  images → model-frame maps) that batch scoring and evaluation use;
- ``assets.extra/tf_serving_warmup_requests``: a TFRecord of PredictionLog
  protos with representative PredictRequests, replayed at load by TF Serving
  (and by serving.server) so the first real request is not slow;
- ``config.json``: what this export used (model path, version, signatures,
  geometry, output mode, parity measured).

The version folder is written under a temporary name in `export_base` and
renamed into place only after the reloaded SavedModel matched the Keras
model, so a server polling `export_base` never sees a partial or wrong
version.
"""

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile

from keras_emlnet import atomic_files
from keras_emlnet.atomic_files import write_json_atomic
from keras_emlnet.inference.progress import StageLog
from serving.export import checks as export_checks
from serving.export import saliency_module

DEFAULT_PARITY_TOLERANCE = 1e-4
# bfloat16 keeps 8 significant bits: maps an export computes in it are checked
# against the float32 Keras model at this looser tolerance. The random-weight
# NASNet + DenseNet demo model (96x128, minmax maps, whose normalisation
# stretches small differences) measured 0.035 from float32, and 0.025 between
# the SavedModel and eager Keras both in bfloat16 (fused convolutions round
# once, eager ones after each op); a wrong export (a BatchNorm applied twice,
# another geometry) differs by far more.
REDUCED_PARITY_TOLERANCE = 0.1
WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
CONFIG_FILE = "config.json"
SERVING_OUTPUT_MODES = ("minmax", "probability", "log_density")
# Modules whose custom layers and models a saved EMLNet refers to.
@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What one export does (recorded in the version's config.json).

    Attributes:
        model: path of the `.keras` model ("<in memory>" when given a model).
        export_base: folder holding the version folders.
        version: positive integer version; None picks the next free one.
        model_name: name written into the warmup requests' model_spec.
        parity_tolerance: largest allowed max |SavedModel - Keras| divided by
            max |Keras| over the check images.
        seed: seeds the representative images.
        max_image_pixels: pixel limit the SavedModel checks on each encoded
            image's header; None = $EMLNET_MAX_IMAGE_PIXELS or 50 M, 0 = none.
        precision: compute precision of the exported model: "auto" (bfloat16
            only where this machine computes it faster,
            `keras_emlnet.inference.precision`; per batch size, see
            `max_batch_size`), "float32", "bfloat16". Choose for the machine
            that will serve: the choice is fixed in the SavedModel.
        fold_batch_norms: export the model with BatchNorm folded into the
            convolutions before it (`keras_emlnet.inference.folding`).
        max_batch_size: the largest batch the server will run: 1 (serving
            without batching, TF Serving's default), or the `max_batch_size`
            of its batching parameters (8 in serving/batching_parameters.txt).
            "auto" measures at 1 and at this size: where bfloat16 is faster
            only for larger batches, the SavedModel computes batches from the
            crossover in bfloat16 and smaller ones in float32 (both traces
            saved: the export and the server's load take longer).
    """

    model: str
    export_base: str
    version: int = None
    model_name: str = None
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE
    seed: int = 0
    max_image_pixels: int = None
    precision: str = "auto"
    fold_batch_norms: bool = True
    max_batch_size: int = 1

    def __post_init__(self):
        if int(self.max_batch_size) < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")


def load_keras_model(path):
    """Loads an EMLNet (or compatible saliency model) from a `.keras` file."""
    from keras_emlnet.models import saving

    path = os.fspath(path)
    if not (os.path.isfile(path) and path.endswith(".keras")):
        raise FileNotFoundError(f"--model {path!r} is not a .keras file")
    return saving.load_model(path, compile=False)


def next_version(export_base):
    """1 + the highest integer version folder in `export_base` (1 if none)."""
    if not os.path.isdir(export_base):
        return 1
    versions = [int(name) for name in os.listdir(export_base) if name.isdigit()]
    return max(versions, default=0) + 1


def model_attributes(model):
    """(input_size, resize_mode, output_mode) of a model, checked for serving."""
    missing = [name for name in ("input_size", "resize_mode", "output_mode") if not hasattr(model, name)]
    if missing:
        raise ValueError(
            f"model {getattr(model, 'name', model)!r} has no {missing}: export needs an EMLNet "
            "(or a model carrying input_size, resize_mode and output_mode)"
        )
    if model.output_mode not in SERVING_OUTPUT_MODES:
        raise ValueError(
            f"output_mode {model.output_mode!r} cannot be served; use one of {SERVING_OUTPUT_MODES}"
        )
    return tuple(int(v) for v in model.input_size), str(model.resize_mode), str(model.output_mode)


def export_saliency_model(model, config, *, log=None):
    """Writes, checks and publishes one SavedModel version.

    Args:
        model: an EMLNet (or a Keras model with input_size, resize_mode and
            output_mode attributes).
        config: ExportConfig.
        log: callable taking one message (e.g. absl's `logging.info`): each
            stage (save, warmup, parity check, publish) is reported as it
            starts and ends, with its seconds; None = silent.

    Returns:
        (version_dir, record) where record is the dict written to config.json.

    Raises:
        FileExistsError: the version folder exists already.
        export_checks.ExportParityError: the reloaded SavedModel differs from
            the Keras model by more than the tolerance (nothing is published).
        ValueError: bad version or a model that cannot be served.
    """
    import tensorflow as tf

    stages = StageLog(log)
    input_size, resize_mode, output_mode = model_attributes(model)
    export_base = os.fspath(config.export_base)
    version = next_version(export_base) if config.version is None else config.version
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"--version must be a positive integer, got {version!r}")
    model_name = config.model_name or os.path.basename(os.path.normpath(export_base))
    final_dir = os.path.join(export_base, str(version))
    if os.path.exists(final_dir):
        raise FileExistsError(f"{final_dir} exists; export to a new --version")
    os.makedirs(export_base, exist_ok=True)
    atomic_files.remove_stale_temp_files(export_base)  # an export killed mid-write
    # Not an integer name, so servers polling export_base ignore it.
    work_dir = tempfile.mkdtemp(prefix=atomic_files.temp_prefix(str(version)), dir=export_base)
    try:
        with stages.stage(f"saving the SavedModel (tracing both signatures) in {work_dir}"):
            module, choice = _serving_module(model, config, input_size, resize_mode, output_mode)
            with _without_capture_rename_log():
                tf.saved_model.save(module, work_dir, signatures=module.signatures())
        with stages.stage("writing the warmup requests"):
            images = export_checks.representative_images(input_size, seed=config.seed)
            # Batches from the bfloat16 crossover run the other trace: warm it too.
            bfloat16_from = 1 if choice.precision == "bfloat16" else choice.bfloat16_from_batch
            requests = export_checks.warmup_requests(
                images, model_name, batch_sizes=[bfloat16_from] if bfloat16_from not in (None, 1) else [])
            export_checks.write_warmup_requests(os.path.join(work_dir, WARMUP_DIR, WARMUP_FILE), requests)
        with stages.stage("reloading the SavedModel and checking it against the Keras model"):
            # Against the float32 Keras model; batches computed in bfloat16 within its looser tolerance.
            parity = export_checks.check_parity(
                work_dir, model, images, tolerance=config.parity_tolerance, reduced_from_batch=bfloat16_from,
                reduced_tolerance=max(config.parity_tolerance, REDUCED_PARITY_TOLERANCE))
        record = {
            **dataclasses.asdict(config),
            "version": version,
            "model_name": model_name,
            "input_size": list(input_size),
            "resize_mode": resize_mode,
            "output_mode": output_mode,
            "signatures": export_checks.describe_signatures(work_dir),
            "padding_value": saliency_module.PADDING_VALUE,
            "warmup_requests": len(requests),
            "parity": parity,
            "precision": choice.description,
            "bfloat16_from_batch": bfloat16_from,
            "precision_reason": choice.reason,
            "tensorflow_version": tf.__version__,
        }
        with stages.stage(f"publishing version {version} as {final_dir}"):
            write_json_atomic(os.path.join(work_dir, CONFIG_FILE), record)
            _make_readable(work_dir)
            os.rename(work_dir, final_dir)  # fails if final_dir appeared meanwhile
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    return final_dir, record


def _serving_module(model, config, input_size, resize_mode, output_mode):
    """(SaliencyModule to save, PrecisionChoice).

    The model (BatchNorm folded unless told not to) is traced in the chosen
    precision over its own float32 variables (`saliency_module.trace_model_maps`).
    "auto" on hardware that needs a measurement (`precision.needs_measurement`)
    times float32 and bfloat16 at batch 1 and at `max_batch_size`
    (`precision.choose_precision_by_batch`, on the very traces that are
    saved); where bfloat16 wins only from some batch size on, both traces are
    saved and each batch runs in the faster one (`maps_by_batch_size`).
    """
    from keras_emlnet.inference import folding
    from keras_emlnet.inference import precision as precision_lib

    folded = folding.fold_batch_norms(model) if config.fold_batch_norms else model
    traced = {}

    def model_maps(precision):
        if precision not in traced:
            traced[precision] = saliency_module.trace_model_maps(folded, input_size, precision)
        return traced[precision]

    if config.precision == precision_lib.AUTO and config.fold_batch_norms and precision_lib.needs_measurement():
        choice = precision_lib.choose_precision_by_batch(
            _timer(model_maps, input_size), config.max_batch_size,
            cache_key_for=lambda batch_size: precision_lib.measurement_key(model, input_size, batch_size))
    else:
        choice = precision_lib.choose_precision(config.precision)
    if choice.precision == "float16":
        raise ValueError("--precision float16 cannot be exported; use auto, float32 or bfloat16")
    maps = model_maps(choice.precision)
    if choice.bfloat16_from_batch is not None:
        maps = saliency_module.maps_by_batch_size(maps, model_maps("bfloat16"), choice.bfloat16_from_batch,
                                                  input_size)
    module = saliency_module.SaliencyModule(
        folded, input_size, resize_mode, output_mode, max_image_pixels=config.max_image_pixels,
        precision=choice.description, model_maps=maps)
    return module, choice


def _timer(model_maps, input_size, rounds=3):
    """measure(precision, batch_size) -> seconds per image of `model_maps(precision)`.

    Both precisions are timed together (`predictor.seconds_per_image`) on the
    first request for a batch size, on the same seeded random images.
    """
    import numpy as np
    import tensorflow as tf

    from keras_emlnet.inference.predictor import seconds_per_image

    timings = {}

    def measure(precision, batch_size):
        if batch_size not in timings:
            images = tf.constant(np.random.default_rng(batch_size).uniform(
                0, 255, (batch_size, *input_size, 3)).astype(np.float32))
            functions = {name: model_maps(name) for name in ("float32", "bfloat16")}
            timings[batch_size] = seconds_per_image(functions, images, rounds)
        return timings[batch_size][precision]

    return measure


class _CaptureRenameFilter(logging.Filter):
    """Drops TensorFlow's note that a signature's inputs "contain unsupported characters".

    The inputs it lists are the signature's captured variables, named by
    number (one per variable: ~1,300 names, ~40 KB of log for NASNet +
    DenseNet); the inputs TF Serving sees (`image_bytes`, `images`) keep
    their names, which the export check reads back.
    """

    def filter(self, record):
        return "with unsupported characters which will be renamed" not in record.getMessage()


@contextlib.contextmanager
def _without_capture_rename_log():
    tf_logger = logging.getLogger("tensorflow")
    log_filter = _CaptureRenameFilter()
    tf_logger.addFilter(log_filter)
    try:
        yield
    finally:
        tf_logger.removeFilter(log_filter)


def _make_readable(directory):
    # mkdtemp/mkstemp create owner-only entries; a server running as another
    # user (the TF Serving container) must be able to read the version.
    for root, dirs, files in os.walk(directory):
        os.chmod(root, 0o755 & ~atomic_files.UMASK)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644 & ~atomic_files.UMASK)
