"""One interface over the two model files users hold: a `.keras` file or a SavedModel.

Batch scoring and evaluation both need: the model's input size, resize mode and
output mode, a batched function from model-frame images to model-frame maps
(run on every replica of a tf.distribute strategy), and the step that takes
one map back to its image's original size (`postprocess.tf_to_original_size`).

- `.keras`: `keras_emlnet.load_model`. An `EMLNet` carries `input_size`,
  `resize_mode` and `output_mode`; any other single-output saliency model
  (a trained `SaliencyEncoder`, say) is used at its static input size with
  "resize" geometry and "raw" output. `precision` bfloat16/float16 sets a mixed dtype
  policy on every layer after loading (variables stay float32), the same
  policy training uses. `precision="auto"` (the default) picks bfloat16 only
  where the hardware computes it faster (`keras_emlnet.inference.precision`).
  The predictor runs an inference copy with BatchNorm folded into the
  convolutions before it (`keras_emlnet.inference.folding`; equal maps within
  float32 rounding, measurably faster), unless `fold_batch_norms=False`.
- SavedModel (a folder with saved_model.pb, as `serving.export` writes): its
  `predict_model_size` function (float32 model-size images → model-frame
  maps; not a signature), so the model sees the same float images as the
  `.keras` path. Exports made before that function existed fall back to the
  `predict_images` signature (uint8 (B, H, W, 3)) fed model-size images (its
  own resize is then an identity), which rounds the resized images to whole
  levels: maps differ from the `.keras` ones by up to ~1% of their range.
  Its dtype was fixed at export: "auto" accepts it, float32 is accepted,
  reduced precisions are refused.
"""

import contextlib
import dataclasses
import logging
import os
import time

import numpy as np

from keras_emlnet.inference import precision as precision_lib
from keras_emlnet.inference.precision import AUTO, PRECISION_CHOICES, choose_precision

PRECISIONS = precision_lib.PRECISIONS

_MIXED_POLICY = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# The SavedModel's float entry point (serving/export/saliency_module.py saves it),
# and the uint8 signature older exports are read through.
SAVED_MODEL_FUNCTION = "predict_model_size"
SAVED_MODEL_SIGNATURE = "predict_images"
# A SavedModel exported without a `blur_sigma` attribute: its blur is baked in, unknown.
UNKNOWN_BLUR = "unknown"


@dataclasses.dataclass
class SaliencyPredictor:
    """A loaded saliency model.

    Attributes:
        source: the path it was loaded from.
        kind: "keras" or "saved_model".
        input_size: (H, W) the model takes.
        resize_mode: "resize" or "pad_to_4_3".
        output_mode: output mode of its maps (see keras_emlnet.models.postprocess).
        precision: compute precision in use.
        precision_reason: why (requested, or what `auto` saw).
        predict: batched function, float32 (B, H, W, 3) RGB 0–255 at the model
            size → float32 (B, H, W, 1) maps; callable inside `strategy.run`.
        blur_sigma: the model's Gaussian blur (pixels at the model size), None
            for none, or `UNKNOWN_BLUR` (a SavedModel does not record it).
    """

    source: str
    kind: str
    input_size: tuple
    resize_mode: str
    output_mode: str
    precision: str
    predict: object
    # Keeps a loaded SavedModel's variables alive as long as `predict`.
    holds: object = None
    precision_reason: str = "requested"
    blur_sigma: object = None

    def __post_init__(self):
        self._to_original = make_to_original(self.resize_mode, self.output_mode)

    def to_original(self, saliency_map, original_size):
        """One (H, W, 1) model-frame map → (h, w, 1) float32 at `original_size`.

        Undoes the geometry and re-normalises for the output mode
        (`postprocess.tf_to_original_size`), traced once for all sizes.
        """
        return self._to_original(saliency_map, np.asarray(original_size, np.int32))

    def config(self):
        """What a run records about the model in its config.json."""
        return {
            "model": self.source,
            "model_kind": self.kind,
            "input_size": list(self.input_size),
            "resize_mode": self.resize_mode,
            "output_mode": self.output_mode,
            "precision": self.precision,
            "precision_reason": self.precision_reason,
            "blur_sigma": self.blur_sigma,
            "postprocessing": self.postprocessing(),
        }

    def postprocessing(self):
        """One line saying how the maps are post-processed (evaluation tables print it per row)."""
        from keras_emlnet.models import postprocess

        if self.blur_sigma == UNKNOWN_BLUR:
            return f"{self.output_mode}, blur as exported (not recorded in the SavedModel)"
        return postprocess.describe(self.output_mode, self.blur_sigma, self.input_size)


def load_predictor(path, *, precision=AUTO, strategy=None, fold_batch_norms=True):
    """Loads a `.keras` file or a SavedModel folder as a SaliencyPredictor.

    Args:
        path: `*.keras` file, or a SavedModel folder (holding saved_model.pb).
        precision: "auto" (bfloat16 where it is faster, see
            `keras_emlnet.inference.precision`), "float32", "bfloat16" or
            "float16" (compute dtype).
        fold_batch_norms: run a copy with BatchNorm folded into convolutions
            (`.keras` only; a SavedModel export is folded already).
        strategy: tf.distribute strategy whose scope the variables are made in
            (default: the current one).

    Raises:
        FileNotFoundError: if `path` is neither.
        ValueError: for an unknown precision, reduced precision with a
            SavedModel, or a model whose output is not one map per image.
    """
    import tensorflow as tf

    path = os.fspath(path)
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {precision!r}")
    strategy = strategy or tf.distribute.get_strategy()
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
        if precision not in (AUTO, "float32"):
            raise ValueError(
                f"{path}: a SavedModel's dtype is fixed at export; use precision float32 "
                "or score the .keras model with reduced precision"
            )
        with strategy.scope():
            return _saved_model_predictor(path, tf.saved_model.load(path))
    if os.path.isfile(path) and path.endswith(".keras"):
        from keras_emlnet.models import saving

        with strategy.scope():
            model = saving.load_model(path, compile=False)
            return _keras_predictor(path, model, precision, fold_batch_norms)
    raise FileNotFoundError(
        f"--model {path!r} is neither a .keras file nor a SavedModel folder (saved_model.pb)"
    )


def predictor_from_keras_model(model, *, precision=AUTO, source="<in memory>", fold_batch_norms=True):
    """Wraps an already built Keras model (an EMLNet or a single-map model).

    With `fold_batch_norms` or a reduced precision it runs a folded copy
    (the policy is set on the copy's convolutions and on shared layers).
    """
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {precision!r}")
    return _keras_predictor(source, model, precision, fold_batch_norms)


def set_compute_precision(model, precision):
    """Sets a mixed dtype policy on every layer of a built model (variables stay float32)."""
    if precision == "float32":
        return model
    policy = _MIXED_POLICY[precision]
    for layer in model._flatten_layers(include_self=True, recursive=True):
        layer.dtype_policy = policy
    return model


@contextlib.contextmanager
def compute_precision(model, precision):
    """Within the block every layer of `model` computes in `precision`; then each gets its own policy back.

    What is traced meanwhile (a tf.function's concrete function) keeps that
    precision, over `model`'s own variables: one model traced in float32 and
    in bfloat16 needs no second copy of its weights.
    """
    layers = list(model._flatten_layers(include_self=True, recursive=True))
    policies = [layer.dtype_policy for layer in layers]
    policy = "float32" if precision == "float32" else _MIXED_POLICY[precision]
    for layer in layers:
        layer.dtype_policy = policy
    try:
        yield model
    finally:
        for layer, policy in zip(layers, policies):
            layer.dtype_policy = policy


def inference_model(model, precision=AUTO, *, fold_batch_norms=True):
    """(model for inference, PrecisionChoice): BatchNorm folded, compute precision set.

    In float32 the returned model shares its unfolded layers with `model`; a
    reduced precision folds into a copy (without folding it sets the policy
    on `model` itself).
    """
    from keras_emlnet.inference import folding

    choice = choose_precision(precision)
    if fold_batch_norms:
        # A reduced precision gets a copy sharing no layer, so `model` stays float32.
        model = folding.fold_batch_norms(model, copy=choice.precision != "float32")
    set_compute_precision(model, choice.precision)
    return model, choice


def choose_inference_model(model, precision=AUTO, *, fold_batch_norms=True, batch_size=1, make_function=None):
    """(model for inference, PrecisionChoice, function), `auto` measured on `model` where the hardware needs it.

    `make_function(model, precision)` makes the callable the caller will run
    (a tf.function: float32 images → maps; default: a plain traced call);
    the returned `function` is the one made for the returned model, so what
    the measurement traced is reused, not traced again.

    Where `precision_lib.needs_measurement()` (a CPU with avx512_bf16 but no
    AMX), a folded float32 model and a folded bfloat16 copy are built and
    their functions timed on `batch_size` random images at the model's input
    size (each traced and warmed once, then 3 alternating calls, median); the
    faster wins and the reason gives both timings. The winner is remembered
    (`precision.remember_choice`): a later call with the same machine,
    TensorFlow, architecture, input size and batch size builds and traces
    only the stored winner. Elsewhere: `inference_model`.
    """
    import numpy as np
    import tensorflow as tf

    from keras_emlnet.inference import folding

    if make_function is None:
        def make_function(m, _):
            return tf.function(lambda x: m(x, training=False))

    input_size = getattr(model, "input_size", None) or model.input_shape[1:3]
    if precision != AUTO or not fold_batch_norms or not precision_lib.needs_measurement():
        chosen, choice = inference_model(model, precision, fold_batch_norms=fold_batch_norms)
        return chosen, choice, make_function(chosen, choice.precision)
    cache_key = precision_lib.measurement_key(model, input_size, batch_size)
    cached = precision_lib.cached_choice(cache_key)
    if cached is not None:
        # Measured before on this machine for this architecture and size: build and trace the winner only.
        chosen, _ = inference_model(model, cached.precision, fold_batch_norms=True)
        return chosen, cached, make_function(chosen, cached.precision)
    candidates = {"float32": folding.fold_batch_norms(model),
                  "bfloat16": set_compute_precision(folding.fold_batch_norms(model, copy=True), "bfloat16")}
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch_size, *input_size, 3)).astype(np.float32))
    functions = {name: make_function(m, name) for name, m in candidates.items()}
    seconds = seconds_per_image(functions, images)
    choice = choose_precision(AUTO, measure=seconds.get, cache_key=cache_key)
    return candidates[choice.precision], choice, functions[choice.precision]


def seconds_per_image(functions, images, rounds=3):
    """{name: median seconds per image} of each function called on `images`.

    One untimed call each first (tracing, oneDNN primitive creation), then
    `rounds` calls alternating between the functions, so load from other
    processes hits them alike.
    """
    for function in functions.values():
        np.asarray(function(images))
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            np.asarray(function(images))
            times[name].append((time.perf_counter() - start) / len(images))
    return {name: float(np.median(values)) for name, values in times.items()}


def _keras_predictor(source, model, precision, fold_batch_norms=True):
    import tensorflow as tf

    output_shape = model.output_shape if hasattr(model, "output_shape") else None
    # An EMLNet or a SaliencyEncoder carries its input size (None where dynamic).
    input_size = getattr(model, "input_size", None) or model.input_shape[1:3]
    if None in tuple(input_size):
        raise ValueError(f"{source}: model input shape {model.input_shape} is not static")
    if output_shape is not None and isinstance(output_shape, tuple) and output_shape[-1] not in (1, None):
        raise ValueError(f"{source}: expected one map per image, output shape is {output_shape}")
    resize_mode = getattr(model, "resize_mode", "resize")
    output_mode = getattr(model, "output_mode", "raw")
    blur_sigma = getattr(model, "blur_sigma", None)

    def make_predict(model, _):
        @tf.function(reduce_retracing=True)
        def predict(images):
            maps = model(images, training=False)
            maps = tf.cast(maps, tf.float32)
            return maps if maps.shape.rank == 4 else maps[..., tf.newaxis]

        return predict

    model, choice, predict = choose_inference_model(
        model, precision, fold_batch_norms=fold_batch_norms, make_function=make_predict)
    logging.getLogger(__name__).info("%s: computing in %s", source, choice)

    return SaliencyPredictor(
        source, "keras", tuple(int(v) for v in input_size), str(resize_mode),
        str(output_mode), choice.precision, predict, precision_reason=choice.reason, blur_sigma=blur_sigma,
    )


def _saved_model_predictor(source, loaded):
    import tensorflow as tf

    input_size = tuple(int(v) for v in _python_value(loaded.input_size))
    resize_mode = _python_value(loaded.resize_mode)
    output_mode = _python_value(loaded.output_mode)
    model_frame_maps = getattr(loaded, SAVED_MODEL_FUNCTION, None)
    if model_frame_maps is not None:

        @tf.function(reduce_retracing=True)
        def predict(images):
            return model_frame_maps(tf.cast(images, tf.float32))

    elif SAVED_MODEL_SIGNATURE in loaded.signatures:
        signature = loaded.signatures[SAVED_MODEL_SIGNATURE]

        @tf.function(reduce_retracing=True)
        def predict(images):
            # Model-size input: the signature's own geometry step becomes identity.
            pixels = tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.uint8)
            maps = tf.cast(signature(images=pixels)["saliency"], tf.float32)
            return maps if maps.shape.rank == 4 else maps[..., tf.newaxis]

    else:
        raise ValueError(
            f"{source}: SavedModel has neither a {SAVED_MODEL_FUNCTION!r} function nor a "
            f"{SAVED_MODEL_SIGNATURE!r} signature (signatures: {sorted(loaded.signatures)})"
        )

    return SaliencyPredictor(
        source, "saved_model", input_size, resize_mode, output_mode, _saved_precision(loaded), predict,
        holds=loaded, precision_reason="fixed at export",
        blur_sigma=_python_value(loaded.blur_sigma) if hasattr(loaded, "blur_sigma") else UNKNOWN_BLUR,
    )


def _saved_precision(loaded):
    # Exports record their compute precision (serving.export); older ones ran float32.
    value = getattr(loaded, "precision", None)
    return "float32" if value is None else _python_value(value)


def _python_value(value):
    if hasattr(value, "numpy"):
        value = value.numpy()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.bytes_):
        return value.decode("utf-8")
    return value


def make_to_original(resize_mode, output_mode):
    """A graph function (map (H, W, 1), original_size (2,) int32) → (h, w, 1), traced once.

    `postprocess.tf_to_original_size` for a fixed geometry mode and output mode.
    """
    import tensorflow as tf

    from keras_emlnet.models.postprocess import tf_to_original_size

    @tf.function(
        input_signature=(
            tf.TensorSpec((None, None, 1), tf.float32),
            tf.TensorSpec((2,), tf.int32),
        )
    )
    def to_original(saliency_map, original_size):
        return tf_to_original_size(saliency_map, original_size, resize_mode, output_mode)

    return to_original
