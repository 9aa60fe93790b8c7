"""image_files: the pixel limit before decoding, EXIF orientation in NumPy and in the graph."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from keras_emlnet import image_files

ORIENTATIONS = range(1, 9)


def _scene(height=6, width=10):
    """An asymmetric RGB image: every flip/rotation of it is different."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows * 40, cols * 25, (rows * width + cols) * 4], -1).astype(np.uint8)


def _jpeg_with_orientation(orientation, array=None):
    image = Image.fromarray(_scene() if array is None else array)
    exif = Image.Exif()
    exif[image_files.EXIF_ORIENTATION_TAG] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def _big_endian_exif_jpeg(orientation):
    """A JPEG whose APP1 TIFF block is big-endian ("MM"), after an APP0 segment."""
    base = io.BytesIO()
    Image.fromarray(_scene()).save(base, "JPEG", quality=95)
    data = base.getvalue()
    # IFD0: two entries, the orientation second, so the parser has to walk.
    ifd = struct.pack(">H", 2)
    ifd += struct.pack(">HHI4s", 0x010F, 2, 4, b"cam\0")  # Make
    ifd += struct.pack(">HHIH2x", image_files.EXIF_ORIENTATION_TAG, 3, 1, orientation)
    ifd += struct.pack(">I", 0)
    tiff = b"MM\0\x2a" + struct.pack(">I", 8) + ifd
    app1 = b"Exif\0\0" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    app0_end = 2 + 2 + struct.unpack(">H", data[4:6])[0]  # SOI, then APP0 from the encoder
    return data[:app0_end] + segment + data[app0_end:]


def _png_header_only(width, height):
    """A tiny PNG that declares width x height (a decompression bomb's header)."""

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _encoded(array, fmt, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_decode_rgb_applies_exif_orientation_as_pil(orientation, tmp_path):
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(_jpeg_with_orientation(orientation))
    with Image.open(path) as image:
        expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        stored = np.asarray(image.convert("RGB"))
    decoded = image_files.decode_rgb(str(path))
    np.testing.assert_array_equal(decoded, expected)
    header = image_files.read_header(str(path))
    assert header.orientation == orientation
    assert header.oriented_size == expected.shape[:2]
    assert (header.height, header.width) == stored.shape[:2]


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_apply_orientation_matches_pil_transpose(orientation):
    array = _scene()
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[image_files.EXIF_ORIENTATION_TAG] = orientation
    image.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(image))
    np.testing.assert_array_equal(image_files.apply_orientation(array, orientation), expected)


def test_tf_orientation_matches_numpy():
    import tensorflow as tf

    array = _scene()
    for orientation in ORIENTATIONS:
        encoded = _jpeg_with_orientation(orientation)
        assert int(image_files.tf_exif_orientation(tf.constant(encoded))) == orientation
        big_endian = _big_endian_exif_jpeg(orientation)
        with Image.open(io.BytesIO(big_endian)) as image:
            assert image.getexif()[image_files.EXIF_ORIENTATION_TAG] == orientation
        assert int(image_files.tf_exif_orientation(tf.constant(big_endian))) == orientation
        turned = image_files.tf_apply_orientation(tf.constant(array), orientation)
        np.testing.assert_array_equal(turned.numpy(), image_files.apply_orientation(array, orientation))
    # Inside a traced function (the serving graph's case), with unknown shapes.
    traced = tf.function(
        lambda data: image_files.tf_apply_orientation(
            tf.io.decode_jpeg(data, channels=3), image_files.tf_exif_orientation(data)
        ),
        input_signature=[tf.TensorSpec([], tf.string)],
    )
    encoded = _jpeg_with_orientation(6)
    stored = tf.io.decode_jpeg(encoded, channels=3).numpy()  # TF's decoder, not PIL's
    np.testing.assert_array_equal(traced(tf.constant(encoded)).numpy(), image_files.apply_orientation(stored, 6))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xd8",  # truncated JPEG
        b"\xff\xd8\xff\xe1\x00\x02",  # an empty APP1
        b"\xff\xd8\xff\xe1\xff\xffExif\0\0II*\0\xff\xff\xff\xff",  # IFD offset far out of range
        b"not an image at all",
    ],
)
def test_tf_orientation_of_malformed_bytes_is_upright(data):
    import tensorflow as tf

    assert int(image_files.tf_exif_orientation(tf.constant(data))) == 1


def test_tf_orientation_without_exif_is_upright():
    import tensorflow as tf

    for data in (_encoded(_scene(), "JPEG"), _encoded(_scene(), "PNG")):
        assert int(image_files.tf_exif_orientation(tf.constant(data))) == 1


def test_tf_image_size_reads_headers_without_decoding():
    import tensorflow as tf

    array = _scene(7, 11)
    for fmt in ("JPEG", "PNG", "GIF", "BMP"):
        size = image_files.tf_image_size(tf.constant(_encoded(array, fmt)))
        assert size.numpy().tolist() == [7, 11], fmt
    bomb = _png_header_only(20_000, 30_000)
    assert image_files.tf_image_size(tf.constant(bomb)).numpy().tolist() == [30_000, 20_000]
    assert image_files.tf_image_size(tf.constant(b"RIFF....WEBP")).numpy().tolist() == [-1, -1]
    # A top-down BMP stores a negative height.
    top_down = bytearray(_encoded(array, "BMP"))
    top_down[22:26] = struct.pack("<i", -7)
    assert image_files.tf_image_size(tf.constant(bytes(top_down))).numpy().tolist() == [7, 11]


def test_bomb_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(20_000, 20_000))
    assert path.stat().st_size < 2_000
    with pytest.raises(image_files.ImageTooLargeError) as info:
        image_files.decode_rgb(str(path))
    error = info.value
    assert str(path) in str(error) and image_files.MAX_PIXELS_ENV in str(error)
    assert (error.pixels, error.limit) == (400_000_000, image_files.DEFAULT_MAX_PIXELS)
    with pytest.raises(image_files.ImageTooLargeError, match="request 7"):
        image_files.read_header(path.read_bytes(), name="request 7")


def test_limit_from_argument_and_environment(monkeypatch, tmp_path):
    path = tmp_path / "scene.png"
    path.write_bytes(_encoded(_scene(6, 10), "PNG"))
    assert image_files.read_header(str(path), limit=60).pixels == 60
    with pytest.raises(image_files.ImageTooLargeError):
        image_files.read_header(str(path), limit=59)
    monkeypatch.setenv(image_files.MAX_PIXELS_ENV, "59")
    assert image_files.max_image_pixels() == 59
    with pytest.raises(image_files.ImageTooLargeError):
        image_files.decode_rgb(str(path))
    for unlimited in ("none", "0"):
        monkeypatch.setenv(image_files.MAX_PIXELS_ENV, unlimited)
        assert image_files.max_image_pixels() is None
    # Unlimited also lifts PIL's own bomb refusal (2 x Image.MAX_IMAGE_PIXELS).
    huge = _png_header_only(20_000, 20_000)
    assert image_files.read_header(huge).pixels == 400_000_000
    monkeypatch.setenv(image_files.MAX_PIXELS_ENV, "many")
    with pytest.raises(ValueError, match=image_files.MAX_PIXELS_ENV):
        image_files.max_image_pixels()


def test_load_rgb_reports_bombs_and_orients(tmp_path):
    from keras_emlnet.data import records

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(10_000, 10_000))
    with pytest.raises(records.BadSampleError, match="too large") as info:
        records.load_rgb(str(bomb))
    assert info.value.path == str(bomb)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(_jpeg_with_orientation(6))
    assert records.load_rgb(str(photo)).shape == (10, 6, 3)


def test_tf_gif_first_frame_keeps_only_the_first_image():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (40, 60), dtype=np.uint8)).convert("P") for _ in range(5)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=10,
                   comment=b"extension blocks before the image", optimize=False)
    animation = buffer.getvalue()
    cut = image_files.tf_gif_first_frame(tf.constant(animation)).numpy()
    with Image.open(io.BytesIO(cut)) as image:
        assert image.n_frames == 1
    assert len(cut) < len(animation) / 3
    np.testing.assert_array_equal(
        tf.io.decode_image(cut, channels=3, expand_animations=False).numpy(),
        tf.io.decode_image(animation, channels=3, expand_animations=False).numpy())
    for other in (b"junk", b"GIF89a\0\0\0", animation[:100], _encoded(_scene(), "PNG")):
        assert image_files.tf_gif_first_frame(tf.constant(other)).numpy() == other


@pytest.mark.parametrize("options", [{"lossless": True}, {"quality": 50}, {"save_all": True, "lossless": True}],
                         ids=["VP8L", "VP8", "VP8X"])
def test_tf_image_size_reads_webp_headers(options):
    import tensorflow as tf

    for height, width in ((37, 53), (2, 16383)):
        image = Image.fromarray(np.zeros((height, width, 3), np.uint8))
        buffer = io.BytesIO()
        extra = {"append_images": [image]} if options.get("save_all") else {}
        image.save(buffer, format="WEBP", **options, **extra)
        assert list(image_files.tf_image_size(tf.constant(buffer.getvalue())).numpy()) == [height, width]
