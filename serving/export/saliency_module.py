"""The tf.Module an EMLNet is exported as: decoding, geometry, original size.

Signatures (all outputs per image, batch axis first):

- ``serving_default``: ``image_bytes`` tf.string (B,), each an encoded JPEG,
  PNG, GIF (first frame) or BMP image of any size; images of one batch may
  differ in size.
- ``predict_images``: ``images`` uint8 (B, H, W, 3) RGB, one size per batch,
  any size (not only the model size).

Both return:

- ``saliency`` float32 (B, Hmax, Wmax): image i's map at its original size
  (h_i, w_i) in the top-left corner, in the model's output mode. Maps are
  padded to the largest height and width in the batch with ``PADDING_VALUE``
  (0.0); the padding is not part of any map (0 is a valid "log_density"
  value), so always crop ``saliency[i, :height[i], :width[i]]``.
- ``height``, ``width`` int32 (B,): each image's original size.

Encoded images are bounded and upright (issue 19): each image's size is read
from its header (`image_files.tf_image_size`) and an image over
`max_image_pixels` (fixed at export: `--max_image_pixels`, else
$EMLNET_MAX_IMAGE_PIXELS, else 50 M) fails with InvalidArgument before it is
decoded, also on the official TF Serving; a JPEG's EXIF orientation is
applied (`tf_exif_orientation`, `tf_apply_orientation`), so ``height`` and
``width`` are the upright size, as image viewers show it. A GIF is cut to its
first frame before decoding (`tf_gif_first_frame`): the decoder would decode
every frame of an animation to keep the first.

Each image goes through the model's own geometry (`resize_mode`,
`keras_emlnet.models.geometry.tf_image_to_model`) and its map is brought back
with `keras_emlnet.models.postprocess.tf_to_original_size` (re-normalised for the
output mode at the original size).

The model runs in one precision, or (an export for a batching server,
`maps_by_batch_size`) in float32 below a batch size and bfloat16 from it,
both traces reading the same variables.

The module also holds `input_size` (int32 [H, W]), `resize_mode`,
`output_mode` and `precision` (tf.string) as non-trainable variables, readable after
``tf.saved_model.load(path)``, and one function that is not a signature (TF
Serving does not see it):

- ``predict_model_size``: float32 (B, H, W, 3) RGB 0-255 at the model size →
  float32 (B, H, W, 1) model-frame maps in the output mode (the Keras model's
  own output). Batch scoring and evaluation (`keras_emlnet.inference.predictor`) call it
  after ``tf.saved_model.load``: images they resized to the model size stay
  float, where ``predict_images`` would round them to uint8 first.
"""

import tensorflow as tf
from tensorflow.python.trackable import data_structures

from keras_emlnet import image_files
from keras_emlnet.inference.predictor import SAVED_MODEL_FUNCTION as PREDICT_MODEL_SIZE
from keras_emlnet.models.geometry import tf_image_to_model
from keras_emlnet.models.postprocess import tf_to_original_size

PADDING_VALUE = 0.0
SERVING_DEFAULT = "serving_default"
PREDICT_IMAGES = "predict_images"
IMAGE_BYTES = "image_bytes"
IMAGES = "images"
OUTPUTS = ("saliency", "height", "width")


class SaliencyModule(tf.Module):
    """Wraps a Keras saliency model for tf.saved_model.save.

    Args:
        model: Keras model taking float32 RGB 0-255 (B, H, W, 3) at
            `input_size` and returning (B, H, W, 1) maps in `output_mode`.
        input_size: (H, W) the model takes.
        resize_mode: "resize" or "pad_to_4_3".
        output_mode: the mode of the model's maps ("minmax", "probability",
            "log_density").
        max_image_pixels: pixel limit of one encoded image, checked from its
            header in the graph; None = `image_files.max_image_pixels()`,
            0 = no limit.
        precision: the compute precision `model` runs in (recorded), e.g.
            "float32" or "float32 below batch 4, bfloat16 from 4".
        model_maps: `model` already traced (`trace_model_maps`,
            `maps_by_batch_size`); None traces it here as it is.
    """

    def __init__(self, model, input_size, resize_mode, output_mode, max_image_pixels=None, precision="float32",
                 model_maps=None):
        super().__init__(name="saliency_serving")
        # Saved: the model's variables as one flat list, not the Keras model
        # object. tf.saved_model.save walks every tracked object (thousands of
        # Keras layers for NASNet + DenseNet) and loading recreates each;
        # the functions below capture the same variables, so the SavedModel
        # and what TF Serving sees are unchanged.
        self._model = data_structures.NoDependency(model)
        self.model_variables = list(model.variables)
        self._max_image_pixels = image_files.max_image_pixels(max_image_pixels)
        self._input_size = tuple(int(v) for v in input_size)
        self._resize_mode = str(resize_mode)
        self._output_mode = str(output_mode)
        self.input_size = tf.Variable(self._input_size, dtype=tf.int32, trainable=False, name="input_size")
        self.resize_mode = tf.Variable(self._resize_mode, dtype=tf.string, trainable=False, name="resize_mode")
        self.output_mode = tf.Variable(self._output_mode, dtype=tf.string, trainable=False, name="output_mode")
        self.precision = tf.Variable(str(precision), dtype=tf.string, trainable=False, name="precision")
        # The model is traced once per precision, before or here
        # (`trace_model_maps`), into `_model_maps`: a concrete function, not
        # saved as an attribute of its own, that both signatures and
        # `predict_model_size` call. A
        # tf.function holding the model would be traced again by
        # tf.saved_model.save (the save context is part of tf.function's cache
        # key) and inside each signature's trace, ~5 s a trace for NASNet +
        # DenseNet. `predict_model_size` itself is a thin tf.function, so the
        # loaded one still checks its input signature.
        if model_maps is None:
            model_maps = trace_model_maps(model, self._input_size)
        self._model_maps = data_structures.NoDependency(model_maps)
        setattr(self, PREDICT_MODEL_SIZE,
                tf.function(self._call_model_maps, input_signature=[model_size_spec(self._input_size)]))

    @property
    def model(self):
        """The wrapped Keras model (not itself saved; its variables are)."""
        return self._model

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES)])
    def serve_image_bytes(self, image_bytes):
        """Encoded images of any sizes → maps at their original sizes."""
        image_bytes = _assert_not_empty(image_bytes, IMAGE_BYTES)
        height, width = self._input_size

        def decode(encoded):
            encoded = _check_pixels(encoded, self._max_image_pixels)
            encoded = image_files.tf_gif_first_frame(encoded)  # decode_image decodes every GIF frame
            image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
            image.set_shape([None, None, 3])
            image = image_files.tf_apply_orientation(image, image_files.tf_exif_orientation(encoded))
            size = tf.shape(image, out_type=tf.int32)[:2]
            return tf_image_to_model(image, self._input_size, self._resize_mode), size

        model_inputs, sizes = tf.map_fn(
            decode,
            image_bytes,
            fn_output_signature=(
                tf.TensorSpec([height, width, 3], tf.float32),
                tf.TensorSpec([2], tf.int32),
            ),
        )
        return self._predict(model_inputs, sizes)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=IMAGES)])
    def serve_images(self, images):
        """uint8 RGB images (B, H, W, 3) of one size → maps at that size."""
        images = _assert_not_empty(images, IMAGES)
        height, width = self._input_size
        model_inputs = tf.map_fn(
            lambda image: tf_image_to_model(image, self._input_size, self._resize_mode),
            images,
            fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
        )
        shape = tf.shape(images, out_type=tf.int32)
        sizes = tf.tile(shape[tf.newaxis, 1:3], [shape[0], 1])
        return self._predict(model_inputs, sizes)

    def _call_model_maps(self, images):
        return self._model_maps(images)

    def _predict(self, model_inputs, sizes):
        # The model's one traced graph (see __init__).
        maps = self._model_maps(model_inputs)
        largest = tf.reduce_max(sizes, axis=0)

        def to_original(args):
            saliency_map, size = args
            restored = tf_to_original_size(saliency_map, size, self._resize_mode, self._output_mode)
            padding = [[0, largest[0] - size[0]], [0, largest[1] - size[1]]]
            return tf.pad(restored[..., 0], padding, constant_values=PADDING_VALUE)

        saliency = tf.map_fn(
            to_original, (maps, sizes), fn_output_signature=tf.TensorSpec([None, None], tf.float32)
        )
        return {"saliency": saliency, "height": sizes[:, 0], "width": sizes[:, 1]}

    def signatures(self):
        """{signature name: concrete function} for tf.saved_model.save."""
        return {
            SERVING_DEFAULT: self.serve_image_bytes.get_concrete_function(),
            PREDICT_IMAGES: self.serve_images.get_concrete_function(),
        }


def model_size_spec(input_size):
    """The TensorSpec of float32 model-size images, (B, H, W, 3)."""
    height, width = (int(v) for v in input_size)
    return tf.TensorSpec([None, height, width, 3], tf.float32, name=IMAGES)


def trace_model_maps(model, input_size, precision=None):
    """`model` traced into a concrete function: float32 model-size images → float32 (B, H, W, 1) maps.

    Args:
        model: the Keras model (float32 RGB 0-255 in, maps in its output mode out).
        input_size: (H, W) it takes.
        precision: None traces `model` as its layers' policies are; "float32"
            or "bfloat16" traces it under that policy, set on its layers for
            the trace only (`predictor.compute_precision`): the function
            computes in that precision with `model`'s own float32 variables.
    """
    from keras_emlnet.inference.predictor import compute_precision

    function = tf.function(lambda images: _model_frame_maps(model, images),
                           input_signature=[model_size_spec(input_size)])
    if precision is None:
        return function.get_concrete_function()
    with compute_precision(model, precision):
        return function.get_concrete_function()


def maps_by_batch_size(small_batch_maps, large_batch_maps, from_batch, input_size):
    """A concrete function running `large_batch_maps` on batches of >= `from_batch` images, else `small_batch_maps`.

    Both are concrete functions of the same signature (`trace_model_maps`),
    e.g. one model traced in float32 and in bfloat16 over the same variables:
    one SavedModel, each batch in the precision measured faster at its size.
    """
    def maps(images):
        return tf.cond(tf.shape(images)[0] >= from_batch,
                       lambda: large_batch_maps(images), lambda: small_batch_maps(images))

    return tf.function(maps, input_signature=[model_size_spec(input_size)], autograph=False).get_concrete_function()


def _model_frame_maps(model, images):
    """float32 model-size images (B, H, W, 3) → (B, H, W, 1) maps in the output mode."""
    return tf.cast(model(images, training=False), tf.float32)


def _check_pixels(encoded, limit):
    """`encoded`, after checking the size its header declares against `limit` (None: no check).

    Formats whose header `tf_image_size` does not read (size [-1, -1]) are left
    to the decoder.
    """
    if limit is None:
        return encoded
    size = tf.cast(image_files.tf_image_size(encoded), tf.int64)
    pixels = size[0] * size[1]
    check = tf.debugging.assert_less_equal(
        pixels, tf.constant(limit, tf.int64),
        message=f"image declares more pixels than the limit of {limit} (height x width from its header)",
    )
    with tf.control_dependencies([check]):
        return tf.identity(encoded)


def _assert_not_empty(tensor, name):
    """`tensor`, after checking it holds at least one image.

    An empty batch fails with InvalidArgument and this message on the
    official server too, instead of an error from a max over nothing.
    """
    check = tf.debugging.assert_positive(tf.size(tensor), message=f"empty batch: '{name}' holds no images")
    with tf.control_dependencies([check]):
        return tf.identity(tensor)
