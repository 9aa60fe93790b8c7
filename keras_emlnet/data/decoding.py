"""In-graph decoding of one sample: encoded files → model-frame (image, y_true), as TF ops.

What the NumPy readers do with PIL and scipy (`records.load_rgb`,
`records.load_density`, `Geometry.fixations_to_model`), done with TensorFlow
ops so that tf.data runs it on all cores without the GIL:

- images: `tf.io.decode_jpeg` (the accurate integer DCT, PIL's default, so
  the pixels are PIL's) or `tf.io.decode_image` for PNG/GIF/BMP, then the
  EXIF orientation applied (`image_files.tf_exif_orientation` +
  `tf_apply_orientation`), as `image_files.decode_rgb` does;
- density maps: decoded without orientation (maps are pixel grids aligned
  with their image) and turned grey with PIL's integer luma formula, so an
  RGB-stored map gives PIL's ``convert("L")`` values exactly;
- geometry and targets: `models.geometry`'s ``tf_`` functions.

A raw sample is a dict of tensors: ``image`` and ``density`` (encoded
bytes), ``rows``/``cols`` (0-based fixation pixels in the upright original
frame), ``size`` ([h, w] of the upright original) and ``name`` (the file,
for error messages).
"""

from keras_emlnet import image_files
from keras_emlnet.models import geometry

# PIL's RGB → L conversion (libImaging/Convert.c: L24 >> 16), ITU-R 601-2 luma.
_LUMA_WEIGHTS = (19595, 38470, 7471)
_LUMA_ROUNDING = 0x8000
_EXIF_HEADER = (0x45, 0x78, 0x69, 0x66, 0, 0)  # "Exif\0\0", the APP1 payload's start


def tf_decode_pixels(encoded, channels=3):
    """Encoded JPEG/PNG/GIF/BMP bytes → uint8 (h, w, c) as stored (no orientation); `channels` 0 = as stored."""
    import tensorflow as tf

    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=channels, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=channels, expand_animations=False),
    )


def tf_exif_orientation(encoded):
    """`image_files.tf_exif_orientation`, skipped (1) when the first 64 KiB hold no "Exif" APP1 header.

    The segment walk is a graph while loop (~2 ms an image in tf.data); most
    training images carry no EXIF block, which a vectorised search of the
    header bytes for "Exif\\0\\0" finds in a fraction of that.
    """
    import tensorflow as tf

    head = tf.io.decode_raw(tf.strings.substr(encoded, 0, image_files.EXIF_SEARCH_BYTES), tf.uint8)
    n = tf.shape(head)[0] - len(_EXIF_HEADER) + 1
    found = tf.ones([tf.maximum(n, 0)], tf.bool)
    for offset, byte in enumerate(_EXIF_HEADER):  # "Exif\0\0" at any offset, vectorised
        found = tf.logical_and(found, tf.equal(head[offset:offset + tf.maximum(n, 0)], byte))
    has_exif = tf.logical_and(tf.io.is_jpeg(encoded), tf.reduce_any(found))
    return tf.cond(has_exif, lambda: image_files.tf_exif_orientation(encoded),
                   lambda: tf.constant(image_files.UPRIGHT, tf.int32))


def tf_decode_rgb(encoded):
    """Encoded image bytes → upright uint8 RGB (h, w, 3), as `image_files.decode_rgb`."""
    return image_files.tf_apply_orientation(tf_decode_pixels(encoded), tf_exif_orientation(encoded))


def tf_decode_grey(encoded):
    """Encoded map bytes → float32 (h, w) in 0–255: PIL's ``convert("L")`` of the stored pixels.

    Grey (and grey + alpha) maps are taken as stored; colour ones through
    PIL's integer luma, channel by channel (a reduction over a 3-wide axis
    costs ~10 ms at 480x640).
    """
    import tensorflow as tf

    pixels = tf_decode_pixels(encoded, channels=0)

    def luma():
        rgb = tf.cast(pixels, tf.int32)
        weighted = rgb[..., 0] * _LUMA_WEIGHTS[0] + rgb[..., 1] * _LUMA_WEIGHTS[1] + rgb[..., 2] * _LUMA_WEIGHTS[2]
        return tf.cast(tf.bitwise.right_shift(weighted + _LUMA_ROUNDING, 16), tf.float32)

    return tf.cond(tf.shape(pixels)[-1] >= 3, luma, lambda: tf.cast(pixels[..., 0], tf.float32))


def tf_image_to_model(raw, input_size, mode):
    """A raw sample's image → float32 (H, W, 3) in the model frame."""
    return geometry.tf_image_to_model(tf_decode_rgb(raw["image"]), input_size, mode)


def tf_sample_to_model(raw, input_size, mode):
    """A raw sample → (image (H, W, 3), y_true (H, W, 2) = [density summing to 1, fixations]).

    Raises (when run) InvalidArgumentError naming the sample if the decoded
    image or map does not have the size recorded when the sample was listed.
    """
    import tensorflow as tf

    image = tf_decode_rgb(raw["image"])
    size = tf.cast(raw["size"], tf.int32)
    density = tf_decode_grey(raw["density"])
    checks = [
        tf.debugging.Assert(tf.reduce_all(tf.equal(tf.shape(image)[:2], size)),
                            [raw["name"], "decoded image size differs from the size listed for it:",
                             tf.shape(image)[:2], size]),
        tf.debugging.Assert(tf.reduce_all(tf.equal(tf.shape(density), size)),
                            [raw["name"], "density map size differs from its image's:", tf.shape(density), size]),
    ]
    with tf.control_dependencies(checks):
        image_model = geometry.tf_image_to_model(image, input_size, mode)
        # A map, not an image: resized without antialiasing (only images are, as PIL does).
        density_model = geometry.tf_image_to_model(density[..., None], input_size, mode, antialias=False)[..., 0]
    density_model = tf.math.divide_no_nan(density_model, tf.reduce_sum(density_model))
    fixations = geometry.tf_fixations_to_model(raw["rows"], raw["cols"], size, input_size, mode)
    return image_model, tf_interleave(density_model, fixations)


def tf_interleave(first, second):
    """float32 (..., 2) = tf.stack([first, second], axis=-1), bit for bit, at the cost of one elementwise op.

    A complex64 holds its real and imaginary float32 parts side by side, so
    the bitcast of tf.complex(first, second) is the stacked pair; tf.stack
    along the last axis copies element by element (~2 ms at 480x640, the
    largest cost of a decoded SALICON sample after the JPEG and PNG decodes).
    """
    import tensorflow as tf

    return tf.bitcast(tf.complex(first, second), tf.float32)


def tf_flip(seed, image, y_true):
    """Flips image and targets together, left-right, with probability 1/2 drawn from `seed` (int64 [2]).

    Stateless: the same seed always gives the same decision, so an epoch's
    flips depend only on (run seed, epoch, position), not on what ran before.
    A fixation at model column c moves to W - 1 - c exactly.
    """
    import tensorflow as tf

    flip = tf.random.stateless_uniform([], seed=seed) < 0.5
    return tf.cond(flip, lambda: (tf.reverse(image, [1]), tf.reverse(y_true, [1])), lambda: (image, y_true))
