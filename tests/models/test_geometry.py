"""Geometry: exact point mappings, round trips, NumPy == TF, graph use."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_emlnet.models import geometry
from keras_emlnet.models.geometry import make_geometry

EXACT = dict(rtol=0, atol=1e-12)


def test_resize_geometry_has_no_padding():
    g = make_geometry((30, 40), (60, 80), "resize")
    assert g.padded_size == (30, 40)
    assert g.padding == (0, 0, 0, 0)
    assert g.scale == (2.0, 2.0)


@pytest.mark.parametrize(
    "original, model, padded, padding",
    [
        # wide 20x90 into 24x32 (4:3): rows added, ph = round(90 * 24 / 32) = 67.5 -> 68
        ((20, 90), (24, 32), (68, 90), (24, 24, 0, 0)),
        # tall 50x30: columns added, pw = round(50 * 32 / 24) = 66.67 -> 67, odd split
        ((50, 30), (24, 32), (50, 67), (0, 0, 18, 19)),
        # already 4:3: nothing to pad
        ((60, 80), (24, 32), (60, 80), (0, 0, 0, 0)),
        # model frame 480x640 and a 768x1024 MIT1003 image: 4:3 already
        ((768, 1024), (480, 640), (768, 1024), (0, 0, 0, 0)),
        # MIT1003 portrait 1024x768 -> padded to 1024x1365 (round(1024 * 4 / 3) = 1365.3)
        ((1024, 768), (480, 640), (1024, 1365), (0, 0, 298, 299)),
    ],
)
def test_pad_to_4_3_padding(original, model, padded, padding):
    g = make_geometry(original, model, "pad_to_4_3")
    assert g.padded_size == padded
    assert g.padding == padding


def test_points_to_model_resize_known_points():
    # 30x40 -> 60x80: pixel r's centre r + 0.5 lands on 2r + 1, i.e. index 2r + 0.5.
    g = make_geometry((30, 40), (60, 80), "resize")
    rows, cols = g.points_to_model([0, 29, 10], [0, 39, 5])
    np.testing.assert_allclose(rows, [0.5, 58.5, 20.5], **EXACT)
    np.testing.assert_allclose(cols, [0.5, 78.5, 10.5], **EXACT)


def test_points_to_model_pad_known_points():
    # 30x80 into 48x64: padded to 60x80 (15 rows above and below), scale 0.8.
    g = make_geometry((30, 80), (48, 64), "pad_to_4_3")
    assert g.padding == (15, 15, 0, 0)
    rows, cols = g.points_to_model([0, 29], [0, 79])
    np.testing.assert_allclose(rows, [(0 + 15 + 0.5) * 0.8 - 0.5, (29 + 15 + 0.5) * 0.8 - 0.5], atol=1e-12)
    np.testing.assert_allclose(rows, [11.9, 35.1], atol=1e-12)
    np.testing.assert_allclose(cols, [-0.1, 63.1], atol=1e-12)


@pytest.mark.parametrize(
    "original, mode", [((37, 53), "resize"), ((50, 30), "pad_to_4_3"), ((20, 90), "pad_to_4_3")]
)
def test_points_round_trip(original, mode, rng):
    g = make_geometry(original, (24, 32), mode)
    rows = rng.uniform(0, original[0] - 1, 50)
    cols = rng.uniform(0, original[1] - 1, 50)
    back_rows, back_cols = g.points_to_original(*g.points_to_model(rows, cols))
    np.testing.assert_allclose(back_rows, rows, atol=1e-9)
    np.testing.assert_allclose(back_cols, cols, atol=1e-9)


def test_fixations_to_model_keeps_every_point():
    g = make_geometry((48, 64), (24, 32), "resize")
    # (10, 20) -> (4.75, 9.75) -> pixel (5, 10); (0, 0) -> (-0.25, -0.25) -> (0, 0);
    # (47, 63) -> (23.25, 31.25) -> (23, 31)
    fixation_map = g.fixations_to_model([10, 0, 47], [20, 0, 63])
    assert fixation_map.dtype == bool and fixation_map.shape == (24, 32)
    assert set(zip(*np.nonzero(fixation_map))) == {(5, 10), (0, 0), (23, 31)}


def test_fixations_to_model_pad_mode_lands_inside_content():
    g = make_geometry((20, 90), (24, 32), "pad_to_4_3")  # 24 pad rows above and below
    fixation_map = g.fixations_to_model([0, 19], [0, 89])
    # row 0 -> (0 + 24 + .5) * 24/68 - .5 = 8.147 -> 8; row 19 -> 15.206 -> 15
    assert set(zip(*np.nonzero(fixation_map))) == {(8, 0), (15, 31)}


@pytest.mark.parametrize("original, mode", [((48, 64), "resize"), ((30, 80), "pad_to_4_3")])
def test_horizontal_flip_commutes_with_point_mapping(original, mode):
    # Flipping in the original frame (c -> w-1-c) equals flipping in the model
    # frame (c -> W-1-c) whenever the padding is symmetric, as here.
    g = make_geometry(original, (48, 64), mode)
    cols = np.array([0.0, 7.0, original[1] - 1.0])
    _, model_cols = g.points_to_model(np.zeros(3), cols)
    _, flipped_cols = g.points_to_model(np.zeros(3), original[1] - 1 - cols)
    np.testing.assert_allclose(flipped_cols, 64 - 1 - model_cols, atol=1e-12)


def test_image_round_trip_is_exact_when_only_padding():
    # 24x40 into 30x40: padded to 30x40 (3 rows each side) = model size, scale 1.
    g = make_geometry((24, 40), (30, 40), "pad_to_4_3")
    assert g.padding == (3, 3, 0, 0) and g.scale == (1.0, 1.0)
    image = np.random.default_rng(0).uniform(0, 255, (24, 40, 3)).astype(np.float32)
    model = g.image_to_model(image)
    assert np.all(model[:3] == 0) and np.all(model[-3:] == 0)
    np.testing.assert_array_equal(g.map_to_original(model), image)


@pytest.mark.parametrize("original, mode", [((60, 80), "resize"), ((40, 90), "pad_to_4_3")])
def test_smooth_map_round_trip(original, mode):
    g = make_geometry(original, (48, 64), mode)
    rows, cols = np.mgrid[0 : original[0], 0 : original[1]]
    smooth = np.exp(-(((rows - 20) / 15.0) ** 2 + ((cols - 30) / 20.0) ** 2))
    back = g.map_to_original(g.image_to_model(smooth))
    assert back.shape == original
    # Rows next to the zero padding blend with it through bilinear sampling.
    np.testing.assert_allclose(back[3:-3], smooth[3:-3], atol=0.02)


def test_map_to_original_undoes_padding_of_a_ramp():
    # A ramp drawn in the model frame over the content area comes back as the
    # same ramp evaluated at each original pixel's model-frame position.
    g = make_geometry((30, 80), (48, 64), "pad_to_4_3")
    model_ramp = np.tile(np.arange(64, dtype=np.float32), (48, 1))
    back = g.map_to_original(model_ramp)
    _, expected_cols = g.points_to_model(np.zeros(80), np.arange(80))
    # interior columns (edges are clamped by bilinear sampling)
    np.testing.assert_allclose(back[5, 2:-2], expected_cols[2:-2], atol=1e-4)


@pytest.mark.parametrize("size", [(7, 9), (64, 80), (33, 17)])
def test_bilinear_resize_matches_tensorflow(size, rng):
    array = rng.uniform(0, 1, (23, 31, 2)).astype(np.float32)
    expected = tf.image.resize(array, size, method="bilinear", antialias=False).numpy()
    np.testing.assert_allclose(geometry.bilinear_resize(array, size), expected, atol=1e-5)


@pytest.mark.parametrize("size", [(7, 9), (64, 80), (33, 17), (23, 10)])
def test_antialiased_bilinear_resize_matches_tensorflow(size, rng):
    array = rng.uniform(0, 1, (23, 31, 2)).astype(np.float32)
    expected = tf.image.resize(array, size, method="bilinear", antialias=True).numpy()
    np.testing.assert_allclose(geometry.bilinear_resize(array, size, antialias=True), expected, atol=1e-5)


@pytest.mark.parametrize("original, size", [((108, 192), (48, 64)), ((77, 102), (48, 64)), ((30, 40), (48, 64))])
def test_images_shrink_like_pil_bilinear(original, size, rng):
    # The released code resizes PIL images (torchvision Resize -> PIL BILINEAR, which
    # antialiases when shrinking). PIL rounds to uint8, so the bound is its rounding.
    from PIL import Image

    image = rng.integers(0, 256, original + (3,)).astype(np.uint8)  # noise: aliasing at its worst
    pil = np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR), np.float32)
    g = make_geometry(original, size, "resize")
    assert np.abs(g.image_to_model(image) - pil).max() <= 1.0
    assert np.abs(geometry.tf_image_to_model(image, size, "resize").numpy() - pil).max() <= 1.0
    if original[0] > size[0]:  # without antialiasing, shrinking noise is far from PIL
        assert np.abs(g.image_to_model(image, antialias=False) - pil).mean() > 10


@pytest.mark.parametrize(
    "original, mode", [((37, 53), "resize"), ((50, 30), "pad_to_4_3"), ((20, 90), "pad_to_4_3")]
)
def test_tf_functions_match_numpy_in_a_graph(original, mode, rng):
    g = make_geometry(original, (24, 32), mode)
    image = rng.integers(0, 256, original + (3,)).astype(np.uint8)
    saliency = rng.uniform(0, 1, (24, 32, 1)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    def to_model(x):
        return geometry.tf_image_to_model(x, (24, 32), mode)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 1]), tf.TensorSpec([2], tf.int32)])
    def to_original(m, size):
        return geometry.tf_map_to_original(m, size, mode)

    model = to_model(image).numpy()
    assert model.dtype == np.float32 and model.shape == (24, 32, 3)
    np.testing.assert_allclose(model, g.image_to_model(image), atol=2e-3)
    back = to_original(saliency, tf.constant(original, tf.int32)).numpy()
    assert back.shape == original + (1,)
    np.testing.assert_allclose(back, g.map_to_original(saliency), atol=1e-5)


@pytest.mark.parametrize("original, mode", [((24, 32), "resize"), ((24, 32), "pad_to_4_3"),
                                            ((18, 32), "pad_to_4_3"), ((24, 30), "pad_to_4_3")])
@pytest.mark.parametrize("antialias", [True, False])
def test_dynamic_model_size_input_skips_the_resize_and_equals_numpy_exactly(original, mode, antialias, rng):
    # (24, 32) is the model size, or becomes it when padded: the resize is the identity,
    # which tf_image_to_model skips at run time. The values equal the NumPy Geometry's
    # and tf.image.resize's (what the skipped resize gave) bit for bit.
    image = rng.integers(0, 256, original + (3,)).astype(np.uint8)
    g = make_geometry(original, (24, 32), mode)
    assert g.padded_size == (24, 32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    def to_model(x):
        return geometry.tf_image_to_model(x, (24, 32), mode, antialias=antialias)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32)])
    def resize(x):
        return tf.image.resize(x, (24, 32), method="bilinear", antialias=antialias)

    got = to_model(image)
    assert got.shape == (24, 32, 3) and to_model.get_concrete_function().structured_outputs.shape == (24, 32, 3)
    padded = np.pad(image, [g.padding[:2], g.padding[2:], (0, 0)]).astype(np.float32)
    np.testing.assert_array_equal(got.numpy(), g.image_to_model(image, antialias=antialias))
    np.testing.assert_array_equal(got.numpy(), resize(padded).numpy())
    # Another size still resizes (static result shape kept).
    other = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
    np.testing.assert_allclose(to_model(other).numpy(),
                               make_geometry((30, 40), (24, 32), mode).image_to_model(other, antialias=antialias),
                               atol=2e-3)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="mode"):
        make_geometry((10, 10), (8, 8), "crop")
    with pytest.raises(ValueError, match="positive"):
        make_geometry((0, 10), (8, 8), "resize")
    g = make_geometry((10, 12), (8, 8), "resize")
    with pytest.raises(ValueError, match="expects"):
        g.image_to_model(np.zeros((11, 12, 3)))
    with pytest.raises(ValueError, match="expects"):
        g.map_to_original(np.zeros((9, 8)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.mode = "pad_to_4_3"
    with pytest.raises(ValueError, match="mode"):
        geometry.tf_image_to_model(np.zeros((4, 4, 3)), (2, 2), "crop")


def test_geometry_import_does_not_load_tensorflow():
    code = "import sys, keras_emlnet.models.geometry; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
