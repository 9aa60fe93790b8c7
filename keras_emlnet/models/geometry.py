"""Geometry between an image's original frame and the model frame.

Two modes, as in the paper:

- ``"resize"`` (SALICON, CAT2000): the image is resized to the model size.
- ``"pad_to_4_3"`` (MIT1003): the image is zero-padded, centred, to the aspect
  ratio of the model size (4:3 at the paper's 480×640), then resized. Padding
  to the model's own aspect ratio means the resize after padding never
  distorts, also at small test sizes that are not 4:3.

Conventions (shared with ``tf.image.resize(method="bilinear")``): pixel ``i`` covers ``[i, i + 1)`` and its centre is
``i + 0.5``, so a point at pixel index ``r`` in a frame of ``n`` rows maps to
``(r + 0.5) * N / n - 0.5`` in a frame of ``N`` rows. Point mappings are exact
affine maps, so original → model → original returns the same coordinates.

Images are downscaled with antialiasing (``IMAGE_ANTIALIAS``): a bilinear
(triangle) filter widened by the shrink factor, as PIL's ``Image.resize(BILINEAR)``
that the released EML-NET code reaches through torchvision's ``Resize`` on PIL
images; maps (density, saliency) are resized without it.

NumPy methods on :class:`Geometry` need only NumPy (serving and metrics code
imports this module cheaply); the ``tf_`` functions import TensorFlow on first
use and work inside ``tf.function``/SavedModel graphs with dynamic sizes.
"""

import dataclasses

import numpy as np

RESIZE = "resize"
PAD_TO_4_3 = "pad_to_4_3"
MODES = (RESIZE, PAD_TO_4_3)
# Images are shrunk like PIL's bilinear resize (what torchvision's Resize does to
# the released code's PIL images): tf.image.resize(antialias=True) is within PIL's
# uint8 rounding of it (WORKSPACE.md), without antialiasing CAT2000's 1080x1920 ->
# 480x640 differs by 43 gray levels on average on high-frequency content.
IMAGE_ANTIALIAS = True


@dataclasses.dataclass(frozen=True)
class Geometry:
    """How one image maps between its original frame and the model frame.

    Attributes:
        original_size: (h, w) of the original image.
        input_size: (H, W) the model sees.
        mode: "resize" or "pad_to_4_3".
        padded_size: (ph, pw) of the original after padding (== original_size
            in "resize" mode); this frame is resized to input_size.
        padding: (top, bottom, left, right) zero rows/columns added around the
            original (all 0 in "resize" mode).
    """

    original_size: tuple
    input_size: tuple
    mode: str
    padded_size: tuple
    padding: tuple

    @property
    def scale(self):
        """(row, col) scale from the padded frame to the model frame."""
        return (
            self.input_size[0] / self.padded_size[0],
            self.input_size[1] / self.padded_size[1],
        )

    def points_to_model(self, rows, cols):
        """Maps 0-based pixel coordinates (rows, cols) to model-frame floats."""
        rows = np.asarray(rows, dtype=np.float64)
        cols = np.asarray(cols, dtype=np.float64)
        top, _, left, _ = self.padding
        sy, sx = self.scale
        return (rows + top + 0.5) * sy - 0.5, (cols + left + 0.5) * sx - 0.5

    def points_to_original(self, rows, cols):
        """Maps model-frame coordinates back to original-frame floats."""
        rows = np.asarray(rows, dtype=np.float64)
        cols = np.asarray(cols, dtype=np.float64)
        top, _, left, _ = self.padding
        sy, sx = self.scale
        return (rows + 0.5) / sy - 0.5 - top, (cols + 0.5) / sx - 0.5 - left

    def fixations_to_model(self, rows, cols):
        """Binary (H, W) model-frame map of original-frame fixation pixels.

        Each point is mapped exactly and rounded to its nearest model pixel,
        so no fixation is lost or smeared (as resizing a binary map would).
        """
        model_rows, model_cols = self.points_to_model(rows, cols)
        height, width = self.input_size
        r = np.clip(np.rint(model_rows).astype(np.int64), 0, height - 1)
        c = np.clip(np.rint(model_cols).astype(np.int64), 0, width - 1)
        fixation_map = np.zeros((height, width), dtype=bool)
        fixation_map[r, c] = True
        return fixation_map

    def image_to_model(self, image, *, antialias=IMAGE_ANTIALIAS):
        """(h, w[, C]) original image → (H, W[, C]) float32 model input.

        `antialias`: shrink like PIL's bilinear resize (images); False for maps.
        """
        image = np.asarray(image, dtype=np.float32)
        if tuple(image.shape[:2]) != tuple(self.original_size):
            raise ValueError(
                f"image is {image.shape[:2]}, geometry expects {self.original_size}"
            )
        top, bottom, left, right = self.padding
        pad = [(top, bottom), (left, right)] + [(0, 0)] * (image.ndim - 2)
        padded = np.pad(image, pad) if any(self.padding) else image
        return bilinear_resize(padded, self.input_size, antialias=antialias)

    def map_to_original(self, saliency_map):
        """(H, W[, C]) model-frame map → (h, w[, C]) float map at the original size.

        Undoes the resize (bilinear) and crops away the padding. Values are
        interpolated, not re-normalised.
        """
        saliency_map = np.asarray(saliency_map, dtype=np.float32)
        if tuple(saliency_map.shape[:2]) != tuple(self.input_size):
            raise ValueError(
                f"map is {saliency_map.shape[:2]}, geometry expects {self.input_size}"
            )
        padded = bilinear_resize(saliency_map, self.padded_size)
        top, _, left, _ = self.padding
        h, w = self.original_size
        return padded[top : top + h, left : left + w]


def make_geometry(original_size, input_size, mode):
    """Builds the :class:`Geometry` for one image.

    Args:
        original_size: (h, w) of the original image.
        input_size: (H, W) of the model input.
        mode: "resize" or "pad_to_4_3".

    Returns:
        A frozen :class:`Geometry`.
    """
    h, w = (int(v) for v in original_size)
    H, W = (int(v) for v in input_size)
    if min(h, w, H, W) <= 0:
        raise ValueError(f"sizes must be positive: original {original_size}, model {input_size}")
    if mode == RESIZE:
        return Geometry((h, w), (H, W), mode, (h, w), (0, 0, 0, 0))
    if mode != PAD_TO_4_3:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    ph, pw = _padded_size(h, w, H, W)
    top, left = (ph - h) // 2, (pw - w) // 2
    padding = (top, ph - h - top, left, pw - w - left)
    return Geometry((h, w), (H, W), mode, (ph, pw), padding)


def _padded_size(h, w, H, W):
    # Integer arithmetic (round half up) so NumPy and TF graphs agree exactly.
    if w * H >= h * W:  # wider than the model frame: add rows
        return max(h, (2 * w * H + W) // (2 * W)), w
    return h, max(w, (2 * h * W + H) // (2 * H))


def bilinear_resize(array, size, *, antialias=False):
    """Bilinear resize of (h, w[, C]) to `size`, like tf.image.resize(method="bilinear", antialias=...).

    Half-pixel centres, edges clamped; separable, float32. With `antialias`,
    a dimension that shrinks uses the triangle filter widened by the shrink
    factor (weights renormalised at the borders), as TensorFlow and PIL do.
    """
    array = np.asarray(array, dtype=np.float32)
    out_h, out_w = (int(v) for v in size)
    if antialias and (out_h < array.shape[0] or out_w < array.shape[1]):
        rows = _triangle_weights(array.shape[0], out_h)
        cols = _triangle_weights(array.shape[1], out_w)
        by_rows = np.tensordot(rows, array, axes=(1, 0))  # (out_h, w, ...)
        return np.moveaxis(np.tensordot(cols, by_rows, axes=(1, 1)), 0, 1).astype(np.float32)
    rows0, rows1, row_frac = _linear_taps(array.shape[0], out_h)
    cols0, cols1, col_frac = _linear_taps(array.shape[1], out_w)
    extra = (1,) * (array.ndim - 2)
    row_frac = row_frac.reshape((-1, 1) + extra)
    col_frac = col_frac.reshape((1, -1) + extra)
    by_rows = array[rows0] * (1 - row_frac) + array[rows1] * row_frac
    return (by_rows[:, cols0] * (1 - col_frac) + by_rows[:, cols1] * col_frac).astype(
        np.float32
    )


def _triangle_weights(in_size, out_size):
    """(out_size, in_size) weights of the (antialiased when shrinking) bilinear filter."""
    scale = out_size / in_size
    support = max(1.0 / scale, 1.0)  # the triangle widens only when shrinking
    centres = (np.arange(out_size, dtype=np.float64) + 0.5) / scale
    inputs = np.arange(in_size, dtype=np.float64) + 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(inputs[None, :] - centres[:, None]) / support)
    return weights / weights.sum(axis=1, keepdims=True)


def _linear_taps(in_size, out_size):
    position = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    position = np.clip(position, 0, in_size - 1)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, in_size - 1)
    return lower, upper, (position - lower).astype(np.float32)


# ---------------------------------------------------------------- TF graph functions


def _tf_padding(original_hw, model_hw):
    """(padded_size, (top, left)) as int32 tensors; mirrors make_geometry."""
    import tensorflow as tf

    h, w = original_hw[0], original_hw[1]
    H, W = model_hw[0], model_hw[1]
    wider = w * H >= h * W
    ph = tf.where(wider, tf.maximum(h, (2 * w * H + W) // (2 * W)), h)
    pw = tf.where(wider, w, tf.maximum(w, (2 * h * W + H) // (2 * H)))
    return (ph, pw), ((ph - h) // 2, (pw - w) // 2)


def tf_image_to_model(image, input_size, mode, *, antialias=IMAGE_ANTIALIAS):
    """One image (h, w, C) of any dtype → (H, W, C) float32 in the model frame.

    Graph-safe: h and w may be dynamic; `input_size` and `mode` are static.
    `antialias`: shrink like PIL's bilinear resize (images, the default);
    False for maps (density maps are resized without it).
    """
    import tensorflow as tf

    _check_mode(mode)
    image = tf.cast(image, tf.float32)
    input_size = [int(v) for v in input_size]
    if mode == PAD_TO_4_3:
        shape = tf.shape(image, out_type=tf.int32)
        (ph, pw), (top, left) = _tf_padding(shape[:2], tf.constant(input_size, tf.int32))
        image = tf.image.pad_to_bounding_box(image, top, left, ph, pw)
    if image.shape[-3:-1].is_fully_defined():  # tf.image.resize skips a static identity itself
        return tf.image.resize(image, input_size, method="bilinear", antialias=bool(antialias))
    # At the model size already (SALICON's 480x640 is the paper's model size) the resize is
    # the identity, bit for bit (half-pixel centres land on the pixels: weights 1 and 0), but
    # with a dynamic size TF runs it anyway, ~5 ms an image with antialiasing at 480x640.
    same_size = tf.reduce_all(tf.equal(tf.shape(image, out_type=tf.int32)[-3:-1], input_size))
    resized = tf.cond(same_size, lambda: image,
                      lambda: tf.image.resize(image, input_size, method="bilinear", antialias=bool(antialias)))
    resized.set_shape(image.shape[:-3].concatenate(input_size).concatenate(image.shape[-1:]))
    return resized


def tf_map_to_original(saliency_map, original_size, mode):
    """One (H, W, C) model-frame map → (h, w, C) float32 at the original size.

    Undoes the resize with bilinear interpolation and crops the padding.
    `original_size` may be a tensor (dynamic); `mode` is static.
    """
    import tensorflow as tf

    _check_mode(mode)
    saliency_map = tf.cast(saliency_map, tf.float32)
    original_size = tf.cast(original_size, tf.int32)
    if mode == RESIZE:
        return tf.image.resize(saliency_map, original_size, method="bilinear")
    model_hw = tf.shape(saliency_map, out_type=tf.int32)[:2]
    (ph, pw), (top, left) = _tf_padding(original_size, model_hw)
    padded = tf.image.resize(saliency_map, tf.stack([ph, pw]), method="bilinear")
    return tf.image.crop_to_bounding_box(
        padded, top, left, original_size[0], original_size[1]
    )



def tf_fixations_to_model(rows, cols, original_size, input_size, mode):
    """Binary (H, W) float32 model-frame map of original-frame fixation pixels, in the graph.

    The same points as `Geometry.fixations_to_model`: each (row, col) mapped
    exactly in float64 and rounded half to even (`np.rint`) to its model
    pixel. `rows`, `cols` and `original_size` may be dynamic tensors.
    """
    import tensorflow as tf

    _check_mode(mode)
    height, width = (int(v) for v in input_size)
    original_size = tf.cast(original_size, tf.int32)
    if mode == PAD_TO_4_3:
        (ph, pw), (top, left) = _tf_padding(original_size, tf.constant([height, width], tf.int32))
    else:
        (ph, pw), (top, left) = (original_size[0], original_size[1]), (0, 0)

    def to_model(points, offset, padded, size):
        scale = tf.constant(size, tf.float64) / tf.cast(padded, tf.float64)
        position = (tf.cast(points, tf.float64) + tf.cast(offset, tf.float64) + 0.5) * scale - 0.5
        return tf.clip_by_value(tf.cast(tf.round(position), tf.int64), 0, size - 1)

    indices = tf.stack([to_model(rows, top, ph, height), to_model(cols, left, pw, width)], axis=-1)
    hits = tf.scatter_nd(indices, tf.ones(tf.shape(indices)[:1], tf.float32), [height, width])
    return tf.minimum(hits, 1.0)

def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
