"""What an export writes besides the SavedModel, and how it is checked.

- Representative images (seeded, several sizes and aspect ratios) feed both
  the warmup requests and the parity check.
- Warmup requests: `PredictionLog` protos holding `PredictRequest`s, one per
  TFRecord, the format TF Serving replays from
  ``assets.extra/tf_serving_warmup_requests``.
- Parity: the SavedModel is reloaded and each signature's maps are compared
  with the Keras model's own ``predict_map`` (decode → geometry → model →
  original size in eager Keras). Images go in as PNG, which decodes
  losslessly, so any difference is the export's. The ``predict_model_size``
  function is compared with the Keras model's output on non-integer float
  images at the model size (it must not round them).
"""

import io
import os

import numpy as np

from keras_emlnet.atomic_files import atomic_path
from serving.export import saliency_module


class ExportParityError(ValueError):
    """The reloaded SavedModel does not reproduce the Keras model."""


def representative_images(input_size, *, seed=0):
    """Three seeded uint8 RGB images: the model size, taller, and odd-sized wider."""
    height, width = (int(v) for v in input_size)
    sizes = [
        (height, width),
        (height + height // 2 + 1, max(8, width - width // 4)),
        (max(8, height // 2 + 3), width + 7),
    ]
    rng = np.random.default_rng(seed)
    images = []
    for size in sizes:
        # Smooth blobs (a coarse grid upsampled), so maps have structure.
        coarse = rng.uniform(0, 255, size=(4, 6, 3))
        rows = np.linspace(0, coarse.shape[0] - 1, size[0]).round().astype(int)
        cols = np.linspace(0, coarse.shape[1] - 1, size[1]).round().astype(int)
        noise = rng.normal(0, 12, size=size + (3,))
        images.append(np.clip(coarse[rows][:, cols] + noise, 0, 255).astype(np.uint8))
    return images


def encode_image(image, image_format="PNG"):
    """uint8 (h, w, 3) → encoded bytes (PNG or JPEG)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format=image_format)
    return buffer.getvalue()


def warmup_requests(images, model_name, batch_sizes=()):
    """PredictionLogs: every image as bytes (mixed sizes, PNG and JPEG), each as uint8, then one
    ``serving_default`` request of each of `batch_sizes` images (the images repeated)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    def log(signature_name, input_name, array):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = signature_name
        request.inputs[input_name].CopyFrom(tf.make_tensor_proto(array))
        return prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)
        )

    formats = ("PNG", "JPEG")
    encoded = [encode_image(image, formats[i % 2]) for i, image in enumerate(images)]
    logs = [log(saliency_module.SERVING_DEFAULT, saliency_module.IMAGE_BYTES, np.array(encoded, dtype=object))]
    for image in images:
        logs.append(log(saliency_module.PREDICT_IMAGES, saliency_module.IMAGES, image[np.newaxis]))
    for batch_size in batch_sizes:
        repeated = [encoded[i % len(encoded)] for i in range(batch_size)]
        logs.append(log(saliency_module.SERVING_DEFAULT, saliency_module.IMAGE_BYTES,
                        np.array(repeated, dtype=object)))
    return logs


def write_warmup_requests(path, logs):
    """Writes PredictionLog protos as a TFRecord file, atomically."""
    import tensorflow as tf

    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(tmp) as writer:
            for entry in logs:
                writer.write(entry.SerializeToString())


def reference_map(model, image):
    """The Keras model's map for one image at its size (its `predict_map`)."""
    if hasattr(model, "predict_map"):
        return np.asarray(model.predict_map(image), dtype=np.float32)
    from keras_emlnet.models.geometry import tf_image_to_model
    from keras_emlnet.models.postprocess import tf_to_original_size

    model_image = tf_image_to_model(image, model.input_size, model.resize_mode)
    maps = model(model_image[np.newaxis], training=False)
    restored = tf_to_original_size(maps[0], image.shape[:2], model.resize_mode, model.output_mode)
    return np.asarray(restored)[..., 0]


def check_parity(saved_model_dir, model, images, *, tolerance, reduced_from_batch=None, reduced_tolerance=None):
    """Reloads the SavedModel and compares both signatures with the Keras model.

    Args:
        saved_model_dir: the SavedModel.
        model: the float32 Keras model.
        images: uint8 RGB images of several sizes.
        tolerance: largest allowed max |SavedModel - Keras| / max |Keras|.
        reduced_from_batch: None, or the batch size from which the SavedModel
            computes in bfloat16 (1: always): those batches are held to
            `reduced_tolerance`, and with a crossover above 1
            ``predict_model_size`` also runs batches of
            `reduced_from_batch` - 1 and `reduced_from_batch` images, so both
            sides of it are checked.
        reduced_tolerance: the tolerance of bfloat16 batches.

    Returns:
        {"max_abs_diff", "max_relative_diff", "tolerance", "images",
        "max_relative_diff_by_batch" ({batch size: worst relative diff}),
        "reduced_from_batch", "reduced_tolerance"}.

    Raises:
        ExportParityError: a map differs by more than its batch's tolerance
            (relative to the reference's largest magnitude), a size or the
            padding is wrong, or an exposed attribute does not match the model.
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_model_dir)
    _check_attributes(loaded, model)
    references, model_size_batch, model_size_want, model_inputs, model_input_maps = _references(model, images)

    encoded = np.array([encode_image(image) for image in images], dtype=object)
    by_bytes = loaded.signatures[saliency_module.SERVING_DEFAULT](
        **{saliency_module.IMAGE_BYTES: tf.constant(encoded)}
    )
    candidates = []  # (name, batch size, SavedModel map, Keras map)
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        if (int(by_bytes["height"][i]), int(by_bytes["width"][i])) != (h, w):
            raise ExportParityError(
                f"serving_default reports size {(int(by_bytes['height'][i]), int(by_bytes['width'][i]))} "
                f"for image {i} of size {(h, w)}"
            )
        padded = by_bytes["saliency"][i].numpy()
        outside = np.concatenate([padded[h:].ravel(), padded[:, w:].ravel()])
        if np.any(outside != saliency_module.PADDING_VALUE):
            raise ExportParityError(f"serving_default padding of image {i} is not {saliency_module.PADDING_VALUE}")
        candidates.append((f"serving_default image {i}", len(images), padded[:h, :w], references[i]))
        by_array = loaded.signatures[saliency_module.PREDICT_IMAGES](
            **{saliency_module.IMAGES: tf.constant(image[np.newaxis])}
        )
        candidates.append((f"predict_images image {i}", 1, by_array["saliency"][0].numpy(), references[i]))

    candidates.extend(_model_size_candidates(loaded, model_size_batch, model_size_want))
    if reduced_from_batch is not None and reduced_from_batch > 1:
        for batch_size in sorted({max(1, reduced_from_batch - 1), reduced_from_batch}):
            index = [i % len(model_inputs) for i in range(batch_size)]
            candidates.extend(_model_size_candidates(loaded, model_inputs[index], model_input_maps[index]))

    def tolerance_of(batch_size):
        reduced = reduced_from_batch is not None and batch_size >= reduced_from_batch
        return reduced_tolerance if reduced else tolerance

    worst_abs, worst_rel, by_batch = 0.0, 0.0, {}
    for name, batch_size, got, want in candidates:
        if got.shape != want.shape:
            raise ExportParityError(f"{name}: map shape {got.shape}, Keras gives {want.shape}")
        diff = float(np.max(np.abs(got.astype(np.float64) - want)))
        relative = diff / max(float(np.max(np.abs(want))), 1e-30)
        if not relative <= tolerance_of(batch_size):  # also catches NaN
            raise ExportParityError(
                f"{saved_model_dir}: {name} (a batch of {batch_size}) differs from the Keras model by {diff:.3g} "
                f"({relative:.3g} relative to its largest value; tolerance {tolerance_of(batch_size)})"
            )
        by_batch[batch_size] = max(by_batch.get(batch_size, 0.0), relative)
        if relative >= worst_rel:
            worst_abs, worst_rel = diff, relative
    return {
        "max_abs_diff": worst_abs,
        "max_relative_diff": worst_rel,
        "tolerance": tolerance,
        "images": [list(image.shape[:2]) for image in images],
        "max_relative_diff_by_batch": {str(size): value for size, value in sorted(by_batch.items())},
        "reduced_from_batch": reduced_from_batch,
        "reduced_tolerance": reduced_tolerance if reduced_from_batch is not None else None,
    }


def _references(model, images):
    """(per-image reference maps, off-grid model-size batch, its Keras maps, the images' model
    inputs, their Keras maps) from one Keras call.

    The same as `reference_map` per image (`predict_map`: geometry → model →
    original size), with every image's model input and the off-grid copies
    of the model-size images run as one batch: one eager Keras call instead
    of one per image (most of the check's time for a large model).
    """
    import tensorflow as tf

    from keras_emlnet.models.geometry import tf_image_to_model
    from keras_emlnet.models.postprocess import tf_to_original_size

    input_size = tuple(int(v) for v in model.input_size)
    model_inputs = [np.asarray(tf_image_to_model(image, input_size, model.resize_mode)) for image in images]
    # Off the integer grid, so a function that rounded to uint8 would show.
    off_grid = [image.astype(np.float32) * np.float32(0.997) + np.float32(0.3)
                for image in images if tuple(image.shape[:2]) == input_size]
    batch = np.stack(model_inputs + off_grid).astype(np.float32)
    # Eager, not `predict_on_batch`: tracing Keras' predict function for this one
    # batch cost ~3x the eager call for NASNet + DenseNet (6.4 s vs 2.0 s at 96x128).
    maps = np.asarray(model(tf.constant(batch), training=False), dtype=np.float32)
    references = [
        np.asarray(tf_to_original_size(tf.constant(maps[i]), image.shape[:2], model.resize_mode,
                                       model.output_mode), np.float32)[..., 0]
        for i, image in enumerate(images)
    ]
    off_grid_batch = np.stack(off_grid) if off_grid else None
    return references, off_grid_batch, maps[len(images):], batch[:len(images)], maps[:len(images)]


def _model_size_candidates(loaded, batch, want):
    """(name, batch size, SavedModel map, Keras map) of `predict_model_size` on one batch of model-size images."""
    import tensorflow as tf

    if batch is None:
        return []
    function = getattr(loaded, saliency_module.PREDICT_MODEL_SIZE, None)
    if function is None:
        raise ExportParityError(f"the SavedModel has no {saliency_module.PREDICT_MODEL_SIZE!r} function")
    got = function(tf.constant(batch)).numpy()
    return [(f"{saliency_module.PREDICT_MODEL_SIZE} image {i}", len(batch), got[i], want[i])
            for i in range(len(batch))]


def _check_attributes(loaded, model):
    got = (
        tuple(int(v) for v in loaded.input_size.numpy()),
        loaded.resize_mode.numpy().decode(),
        loaded.output_mode.numpy().decode(),
    )
    want = (tuple(int(v) for v in model.input_size), model.resize_mode, model.output_mode)
    if got != want:
        raise ExportParityError(f"SavedModel attributes (input_size, resize_mode, output_mode) {got} != {want}")


def describe_signatures(saved_model_dir):
    """{signature: {"inputs"|"outputs": {name: {"dtype", "shape"}}}} from saved_model.pb."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        saved_model = saved_model_pb2.SavedModel.FromString(f.read())

    def tensors(infos):
        return {
            name: {
                "dtype": types_pb2.DataType.Name(info.dtype),
                "shape": [dim.size for dim in info.tensor_shape.dim],
            }
            for name, info in sorted(infos.items())
        }

    signatures = saved_model.meta_graphs[0].signature_def
    return {
        name: {"inputs": tensors(sig.inputs), "outputs": tensors(sig.outputs)}
        for name, sig in sorted(signatures.items())
        if not name.startswith("__")
    }
