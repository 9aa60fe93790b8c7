"""In-graph decoding (keras_emlnet.data.decoding) against the NumPy/PIL readers it replaces."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_emlnet import image_files
from keras_emlnet.data import decoding
from keras_emlnet.models import geometry


def encode(array, fmt, **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt, mode", [("PNG", "L"), ("PNG", "LA"), ("PNG", "RGB"), ("PNG", "RGBA"),
                                       ("JPEG", "L"), ("JPEG", "RGB")])
def test_grey_maps_equal_pils_convert_l(rng, fmt, mode):
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    array = rng.integers(0, 256, (37, 53, channels), dtype=np.uint8)
    data = encode(array[..., 0] if channels == 1 else array, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    with Image.open(io.BytesIO(data)) as image:
        expected = np.asarray(image.convert("L"), dtype=np.float32)
    np.testing.assert_array_equal(decoding.tf_decode_grey(tf.constant(data)).numpy(), expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_rgb_equals_decode_rgb_for_every_exif_orientation(rng, orientation):
    array = rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[image_files.EXIF_ORIENTATION_TAG] = orientation
    data = encode(array, "JPEG", quality=92, exif=exif)
    got = decoding.tf_decode_rgb(tf.constant(data)).numpy()
    np.testing.assert_array_equal(got, image_files.decode_rgb(data))  # PIL's pixels, turned upright
    assert got.shape[:2] == ((44, 30) if orientation >= 5 else (30, 44))


def test_rgb_of_grey_and_png_images_equals_decode_rgb(rng):
    grey = rng.integers(0, 256, (21, 34), dtype=np.uint8)
    colour = rng.integers(0, 256, (21, 34, 4), dtype=np.uint8)
    for data in (encode(grey, "JPEG"), encode(grey, "PNG"), encode(colour, "PNG")):
        np.testing.assert_array_equal(decoding.tf_decode_rgb(tf.constant(data)).numpy(), image_files.decode_rgb(data))


@pytest.mark.parametrize("mode", geometry.MODES)
@pytest.mark.parametrize("original", [(48, 64), (37, 90), (90, 37)])
def test_fixations_to_model_equals_the_numpy_geometry(rng, mode, original):
    input_size = (24, 32)
    rows = rng.integers(0, original[0], 300)
    cols = rng.integers(0, original[1], 300)
    expected = geometry.make_geometry(original, input_size, mode).fixations_to_model(rows, cols)
    got = geometry.tf_fixations_to_model(tf.constant(rows), tf.constant(cols), tf.constant(original), input_size, mode)
    np.testing.assert_array_equal(got.numpy(), expected.astype(np.float32))


def test_interleave_is_stack_on_the_last_axis_bit_for_bit(rng):
    first = rng.standard_normal((5, 7)).astype(np.float32)
    second = (rng.uniform(size=(5, 7)) < 0.3).astype(np.float32)
    first[0, :3] = [0.0, -0.0, np.float32(1e-42)]  # signed zero and a subnormal survive
    got = decoding.tf_interleave(tf.constant(first), tf.constant(second)).numpy()
    assert got.dtype == np.float32 and got.shape == (5, 7, 2)
    np.testing.assert_array_equal(got.view(np.uint32), np.stack([first, second], axis=-1).view(np.uint32))
