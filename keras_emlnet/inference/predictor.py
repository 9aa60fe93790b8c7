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
  policy training uses.
- SavedModel (a folder with saved_model.pb, as `serving.export` writes): its
  `predict_model_size` function (float32 model-size images → model-frame
  maps; not a signature), so the model sees the same float images as the
  `.keras` path. Exports made before that function existed fall back to the
  `predict_images` signature (uint8 (B, H, W, 3)) fed model-size images (its
  own resize is then an identity), which rounds the resized images to whole
  levels: maps differ from the `.keras` ones by up to ~1% of their range.
  Its dtype was fixed at export, so only float32 is accepted.
"""

import dataclasses
import os

import numpy as np

PRECISIONS = ("float32", "bfloat16", "float16")
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
            "blur_sigma": self.blur_sigma,
            "postprocessing": self.postprocessing(),
        }

    def postprocessing(self):
        """One line saying how the maps are post-processed (evaluation tables print it per row)."""
        from keras_emlnet.models import postprocess

        if self.blur_sigma == UNKNOWN_BLUR:
            return f"{self.output_mode}, blur as exported (not recorded in the SavedModel)"
        return postprocess.describe(self.output_mode, self.blur_sigma, self.input_size)


def load_predictor(path, *, precision="float32", strategy=None):
    """Loads a `.keras` file or a SavedModel folder as a SaliencyPredictor.

    Args:
        path: `*.keras` file, or a SavedModel folder (holding saved_model.pb).
        precision: "float32", "bfloat16" or "float16" (compute dtype).
        strategy: tf.distribute strategy whose scope the variables are made in
            (default: the current one).

    Raises:
        FileNotFoundError: if `path` is neither.
        ValueError: for an unknown precision, reduced precision with a
            SavedModel, or a model whose output is not one map per image.
    """
    import tensorflow as tf

    path = os.fspath(path)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    strategy = strategy or tf.distribute.get_strategy()
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
        if precision != "float32":
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
            return _keras_predictor(path, model, precision)
    raise FileNotFoundError(
        f"--model {path!r} is neither a .keras file nor a SavedModel folder (saved_model.pb)"
    )


def predictor_from_keras_model(model, *, precision="float32", source="<in memory>"):
    """Wraps an already built Keras model (an EMLNet or a single-map model)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return _keras_predictor(source, model, precision)


def set_compute_precision(model, precision):
    """Sets a mixed dtype policy on every layer of a built model (variables stay float32)."""
    if precision == "float32":
        return model
    policy = _MIXED_POLICY[precision]
    for layer in model._flatten_layers(include_self=True, recursive=True):
        layer.dtype_policy = policy
    return model


def _keras_predictor(source, model, precision):
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
    set_compute_precision(model, precision)

    @tf.function(reduce_retracing=True)
    def predict(images):
        maps = model(images, training=False)
        maps = tf.cast(maps, tf.float32)
        return maps if maps.shape.rank == 4 else maps[..., tf.newaxis]

    return SaliencyPredictor(
        source, "keras", tuple(int(v) for v in input_size), str(resize_mode),
        str(output_mode), precision, predict, blur_sigma=blur_sigma,
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
        source, "saved_model", input_size, resize_mode, output_mode, "float32", predict,
        holds=loaded, blur_sigma=_python_value(loaded.blur_sigma) if hasattr(loaded, "blur_sigma") else UNKNOWN_BLUR,
    )


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
