"""Reading image files safely: a pixel limit checked before decoding, EXIF orientation.

Every decoder in the project goes through this module: the dataset readers,
the in-graph pipelines, the serving graph, batch scoring and the client. Two
rules hold everywhere:

- **One pixel limit**, checked from the file's header before any pixel is
  decoded, so a small file that declares a huge image (a decompression bomb)
  costs nothing: ``DEFAULT_MAX_PIXELS``, overridden by the environment
  variable ``EMLNET_MAX_IMAGE_PIXELS`` or an explicit ``limit``.
- **EXIF orientation is applied**, as image viewers do, so a portrait photo
  stored sideways is scored upright (and its map comes back upright).

NumPy/PIL at import; the ``tf_*`` functions import TensorFlow when called.
"""

import dataclasses
import io
import os
import re
import warnings

import numpy as np

DEFAULT_MAX_PIXELS = 50_000_000
MAX_PIXELS_ENV = "EMLNET_MAX_IMAGE_PIXELS"

# EXIF tag 0x0112 holds the orientation; 1 is "stored upright".
EXIF_ORIENTATION_TAG = 0x0112
UPRIGHT = 1

# The in-graph EXIF parser reads at most this many leading bytes: the
# orientation lives in APP1, which JPEG writers put right after SOI/APP0.
EXIF_SEARCH_BYTES = 65_536
_MAX_JPEG_SEGMENTS = 64
_MAX_IFD_ENTRIES = 256


class ImageTooLargeError(ValueError):
    """An image declares more pixels than the limit allows.

    Attributes:
        source: the file or request the image came from.
        pixels: width × height from its header (-1 if PIL refused it first).
        limit: the limit it exceeds.
    """

    def __init__(self, source, pixels, limit, size=None):
        self.source = str(source)
        self.pixels = int(pixels)
        self.limit = int(limit)
        declared = f"{size[1]}x{size[0]} = {pixels:,} pixels" if size else "too many pixels"
        super().__init__(
            f"{self.source}: image declares {declared}, over the limit of {self.limit:,} "
            f"pixels; raise it with {MAX_PIXELS_ENV}=N (or the command's --max_image_pixels) "
            "if the image is trusted"
        )


def max_image_pixels(limit=None):
    """The pixel limit in force: `limit`, else $EMLNET_MAX_IMAGE_PIXELS, else the default.

    Returns None (no limit) when the value is 0 or "none".
    """
    if limit is None:
        value = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not value:
            return DEFAULT_MAX_PIXELS
        if value.lower() == "none":
            return None
        try:
            limit = int(value)
        except ValueError:
            raise ValueError(
                f"{MAX_PIXELS_ENV}={value!r}: expected a whole number of pixels or 'none'"
            ) from None
    limit = int(limit)
    if limit < 0:
        raise ValueError(f"pixel limit must be >= 0 (0 = no limit), got {limit}")
    return limit or None


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    """What an image file declares before any pixel is decoded."""

    height: int
    width: int
    format: str
    orientation: int = UPRIGHT

    @property
    def pixels(self):
        return self.height * self.width

    @property
    def oriented_size(self):
        """(h, w) once the EXIF orientation is applied (5–8 swap the axes)."""
        if self.orientation in (5, 6, 7, 8):
            return self.width, self.height
        return self.height, self.width


def _describe(source, name):
    if name is not None:
        return str(name)
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "name", "<image bytes>")


def _open(source, name, limit):
    """PIL image opened lazily (header only), its pixel count checked first."""
    from PIL import Image

    limit = max_image_pixels(limit)
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    # PIL's own bomb check would refuse images above 2 × Image.MAX_IMAGE_PIXELS
    # before ours runs; an explicit higher limit must win.
    pil_limit = Image.MAX_IMAGE_PIXELS
    if pil_limit is not None and (limit is None or limit > 2 * pil_limit):
        Image.MAX_IMAGE_PIXELS = None if limit is None else limit // 2 + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(source)
        except Image.DecompressionBombError as error:
            match = re.search(r"\((\d+) pixels\)", str(error))
            pixels = int(match.group(1)) if match else -1
            raise ImageTooLargeError(_describe(source, name), pixels, limit or pixels) from None
    width, height = image.size
    if limit is not None and width * height > limit:
        image.close()
        raise ImageTooLargeError(_describe(source, name), width * height, limit, (height, width))
    return image


def _orientation(image):
    try:
        value = int(image.getexif().get(EXIF_ORIENTATION_TAG, UPRIGHT))
    except (OSError, ValueError, TypeError, SyntaxError):  # a broken EXIF block is ignored
        return UPRIGHT
    return value if 1 <= value <= 8 else UPRIGHT


def read_header(source, *, name=None, limit=None):
    """Reads an image's header (no pixel decoded) and checks it against the pixel limit.

    Args:
        source: a path, the encoded bytes, or a binary file object.
        name: how errors name the image (default: the path).
        limit: pixel limit (default: `max_image_pixels()`).

    Returns:
        An `ImageHeader`.

    Raises:
        ImageTooLargeError: the image declares more pixels than the limit.
        OSError, ValueError, SyntaxError: PIL cannot read the header.
    """
    with _open(source, name, limit) as image:
        width, height = image.size
        return ImageHeader(int(height), int(width), str(image.format), _orientation(image))


def apply_orientation(array, orientation):
    """An (h, w, ...) array turned upright from EXIF `orientation` 1..8 (as PIL's exif_transpose)."""
    orientation = int(orientation)
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return np.swapaxes(array, 0, 1)
    if orientation == 6:
        return np.swapaxes(array, 0, 1)[:, ::-1]
    if orientation == 7:
        return np.swapaxes(array, 0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.swapaxes(array, 0, 1)[::-1]
    return array


def decode_rgb(source, *, name=None, limit=None):
    """Decodes an image to upright uint8 RGB (h, w, 3): header checked first, EXIF applied.

    Grey, palette and alpha images become RGB (alpha dropped).

    Raises:
        ImageTooLargeError: the image declares more pixels than the limit.
        OSError, ValueError, SyntaxError: PIL cannot decode it.
    """
    with _open(source, name, limit) as image:
        orientation = _orientation(image)
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(apply_orientation(array, orientation))


# ----------------------------------------------------------------------------
# In-graph versions (the serving SavedModel and tf.data pipelines).


def _tf_bytes(encoded, length):
    """The first `length` bytes of `encoded` as int64, zero-padded (indices never fail)."""
    import tensorflow as tf

    head = tf.io.decode_raw(tf.strings.substr(encoded, 0, length), tf.uint8)
    head = tf.cast(head, tf.int64)
    return tf.pad(head, [[0, length + 16 - tf.shape(head)[0]]])


def tf_exif_orientation(encoded):
    """EXIF orientation (int32 scalar, 1..8) of JPEG bytes, read in the graph; 1 if none."""
    import tensorflow as tf

    size = EXIF_SEARCH_BYTES
    data = _tf_bytes(encoded, size)

    def at(index):
        return tf.gather(data, tf.clip_by_value(index, 0, size + 15))

    def be16(index):
        return at(index) * 256 + at(index + 1)

    is_jpeg = tf.logical_and(tf.equal(at(0), 0xFF), tf.equal(at(1), 0xD8))
    exif_magic = tf.constant([0x45, 0x78, 0x69, 0x66, 0, 0], tf.int64)  # "Exif\0\0"

    # Walk the JPEG segments until APP1/Exif (-> TIFF start) or SOS/garbage.
    def segment_cond(i, position, tiff):
        return tf.logical_and(
            tf.logical_and(i < _MAX_JPEG_SEGMENTS, tiff < 0), position < size - 10
        )

    def segment_body(i, position, tiff):
        marker_ok = tf.equal(at(position), 0xFF)
        marker = at(position + 1)
        length = be16(position + 2)
        magic = tf.gather(data, tf.clip_by_value(position + 4 + tf.range(6, dtype=tf.int64), 0, size + 15))
        found = tf.logical_and(
            tf.logical_and(marker_ok, tf.equal(marker, 0xE1)), tf.reduce_all(tf.equal(magic, exif_magic))
        )
        stop = tf.logical_or(tf.logical_not(marker_ok), tf.equal(marker, 0xDA))
        stop = tf.logical_or(stop, length < 2)
        next_position = tf.where(stop, tf.constant(size, tf.int64), position + 2 + length)
        tiff = tf.where(found, position + 10, tiff)
        return i + 1, next_position, tiff

    _, _, tiff = tf.while_loop(
        segment_cond,
        segment_body,
        (tf.constant(0, tf.int64), tf.constant(2, tf.int64), tf.constant(-1, tf.int64)),
    )

    little = tf.logical_and(tf.equal(at(tiff), 0x49), tf.equal(at(tiff + 1), 0x49))

    def u16(index):
        return tf.where(little, at(index) + at(index + 1) * 256, be16(index))

    def u32(index):
        low, high = u16(index), u16(index + 2)
        return tf.where(little, low + high * 65536, low * 65536 + high)

    ifd = tiff + u32(tiff + 4)
    count = tf.minimum(u16(ifd), tf.constant(_MAX_IFD_ENTRIES, tf.int64))

    def entry_cond(k, value):
        return tf.logical_and(k < count, value < 0)

    def entry_body(k, value):
        entry = ifd + 2 + 12 * k
        is_orientation = tf.equal(u16(entry), EXIF_ORIENTATION_TAG)
        return k + 1, tf.where(is_orientation, u16(entry + 8), value)

    _, value = tf.while_loop(
        entry_cond, entry_body, (tf.constant(0, tf.int64), tf.constant(-1, tf.int64))
    )
    valid = tf.logical_and(tf.logical_and(is_jpeg, tiff >= 0), ifd < size)
    valid = tf.logical_and(valid, tf.logical_and(value >= 1, value <= 8))
    return tf.cast(tf.where(valid, value, tf.constant(UPRIGHT, tf.int64)), tf.int32)


def tf_apply_orientation(image, orientation):
    """An (h, w, c) image turned upright from EXIF `orientation`, graph-safe."""
    import tensorflow as tf

    def transpose(x):
        return tf.transpose(x, [1, 0, 2])

    branches = [
        lambda: image,  # 0 (invalid) and 1: upright
        lambda: image,
        lambda: tf.reverse(image, [1]),
        lambda: tf.reverse(image, [0, 1]),
        lambda: tf.reverse(image, [0]),
        lambda: transpose(image),
        lambda: tf.reverse(transpose(image), [1]),
        lambda: tf.reverse(transpose(image), [0, 1]),
        lambda: tf.reverse(transpose(image), [0]),
    ]
    index = tf.cast(orientation, tf.int32)
    index = tf.where(tf.logical_and(index >= 1, index <= 8), index, 0)
    return tf.switch_case(index, branches)


def tf_image_size(encoded):
    """int32 [height, width] declared by JPEG/PNG/GIF/BMP/WEBP bytes, without decoding; [-1, -1] otherwise."""
    import tensorflow as tf

    data = _tf_bytes(encoded, 32)

    def le(index, n):
        return sum(data[index + k] * (256**k) for k in range(n))

    def be(index, n):
        return sum(data[index + k] * (256 ** (n - 1 - k)) for k in range(n))

    is_jpeg = tf.logical_and(tf.equal(data[0], 0xFF), tf.equal(data[1], 0xD8))
    is_png = tf.reduce_all(tf.equal(data[:4], tf.constant([0x89, 0x50, 0x4E, 0x47], tf.int64)))
    is_gif = tf.reduce_all(tf.equal(data[:4], tf.constant([0x47, 0x49, 0x46, 0x38], tf.int64)))
    is_bmp = tf.reduce_all(tf.equal(data[:2], tf.constant([0x42, 0x4D], tf.int64)))

    def as_int32(size):
        return tf.cast(tf.minimum(size, 2**31 - 1), tf.int32)

    def bmp_size():
        # Signed 32-bit little endian; a negative height means top-down rows.
        raw = tf.stack([le(22, 4), le(18, 4)])
        return as_int32(tf.abs(tf.where(raw >= 2**31, raw - 2**32, raw)))

    # WEBP (which tf.io.decode_image also reads): RIFF....WEBP, then a VP8 / VP8L / VP8X chunk.
    is_webp = tf.logical_and(
        tf.reduce_all(tf.equal(data[:4], tf.constant([0x52, 0x49, 0x46, 0x46], tf.int64))),
        tf.reduce_all(tf.equal(data[8:12], tf.constant([0x57, 0x45, 0x42, 0x50], tf.int64))),
    )

    def webp_size():
        chunk = data[12:16]
        lossy = tf.reduce_all(tf.equal(chunk, tf.constant([0x56, 0x50, 0x38, 0x20], tf.int64)))  # "VP8 "
        lossless = tf.reduce_all(tf.equal(chunk, tf.constant([0x56, 0x50, 0x38, 0x4C], tf.int64)))  # "VP8L"
        extended = tf.reduce_all(tf.equal(chunk, tf.constant([0x56, 0x50, 0x38, 0x58], tf.int64)))  # "VP8X"
        bits = le(21, 4)
        size = tf.where(
            lossy, tf.stack([le(28, 2) % 16384, le(26, 2) % 16384]),
            tf.where(lossless, tf.stack([(bits // 16384) % 16384 + 1, bits % 16384 + 1]),
                     tf.where(extended, tf.stack([le(27, 3) + 1, le(24, 3) + 1]),
                              tf.constant([-1, -1], tf.int64))))
        return as_int32(size)

    unknown = tf.constant([-1, -1], tf.int32)
    return tf.case(
        [
            (is_jpeg, lambda: tf.cast(tf.image.extract_jpeg_shape(encoded)[:2], tf.int32)),
            (is_png, lambda: as_int32(tf.stack([be(20, 4), be(16, 4)]))),
            (is_gif, lambda: as_int32(tf.stack([le(8, 2), le(6, 2)]))),
            (is_bmp, bmp_size),
            (is_webp, webp_size),
        ],
        default=lambda: unknown,
        exclusive=True,
    )


# A GIF's sub-blocks are walked one per loop step; a legitimate first frame of
# 50 M pixels needs well under this many (255-byte blocks).
_MAX_GIF_STEPS = 1 << 20


def tf_gif_first_frame(encoded):
    """GIF bytes cut after their first image (plus the trailer); other bytes unchanged.

    `tf.io.decode_image(..., expand_animations=False)` decodes every frame of
    a GIF and keeps the first: a 0.9 MB GIF of 200 frames of 2000 x 2000 took
    500 MB and 6 s (issue 19), and the header's size says nothing about the
    frame count. Cut to its first image, a GIF costs one frame. Graph-safe;
    malformed GIFs are returned unchanged (the decoder reports them).
    """
    import tensorflow as tf

    data = tf.cast(tf.io.decode_raw(encoded, tf.uint8), tf.int64)
    length = tf.shape(data, out_type=tf.int64)[0]
    is_gif = tf.logical_and(length > 13, tf.equal(tf.strings.substr(encoded, 0, 4), "GIF8"))

    def at(index):
        index = tf.cast(index, tf.int64)
        return tf.gather(data, tf.clip_by_value(index, tf.constant(0, tf.int64), tf.maximum(length - 1, 0)))

    def table_size(packed):
        # A colour table of 2^(n+1) RGB entries follows when bit 7 is set.
        return tf.where(packed >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), packed % 8), 0)

    # state 0: at a block's first byte; 1: in an extension's sub-blocks; 2: in the first image's.
    def cond(step, position, state, end):
        return tf.logical_and(tf.logical_and(end < 0, position < length), step < _MAX_GIF_STEPS)

    def body(step, position, state, end):
        byte = at(position)
        at_block = tf.equal(state, 0)
        is_extension = tf.logical_and(at_block, tf.equal(byte, 0x21))
        is_image = tf.logical_and(at_block, tf.equal(byte, 0x2C))
        image_data = position + 10 + table_size(at(position + 9)) + 1  # descriptor, local table, LZW size
        # In sub-blocks: a size byte of 0 ends them.
        in_blocks = tf.logical_not(at_block)
        terminator = tf.logical_and(in_blocks, tf.equal(byte, 0))
        next_position = tf.where(
            is_extension, position + 2,
            tf.where(is_image, image_data, tf.where(terminator, position + 1, position + byte + 1)))
        next_state = tf.where(
            is_extension, tf.constant(1, tf.int64),
            tf.where(is_image, tf.constant(2, tf.int64), tf.where(terminator, tf.constant(0, tf.int64), state)))
        unknown = tf.logical_and(at_block, tf.logical_not(tf.logical_or(is_extension, is_image)))
        end = tf.where(tf.logical_and(terminator, tf.equal(state, 2)), position + 1,
                       tf.where(unknown, length, end))  # trailer or garbage: leave the bytes alone
        return step + 1, next_position, next_state, end

    def first_frame():
        start = 13 + table_size(at(10))
        _, _, _, end = tf.while_loop(
            cond, body,
            (tf.constant(0, tf.int64), start, tf.constant(0, tf.int64), tf.constant(-1, tf.int64)))
        cut = tf.logical_and(end > 0, end < length)
        head = lambda: tf.strings.substr(encoded, tf.constant(0, tf.int64), end)  # noqa: E731
        return tf.cond(cut, lambda: tf.strings.join([head(), b"\x3b"]), lambda: encoded)  # + GIF trailer

    return tf.cond(is_gif, first_frame, lambda: encoded)
