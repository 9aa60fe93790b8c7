"""MATLAB imresize semantics, checked against weights worked out by hand from Keys' kernel."""

import numpy as np
import pytest

from keras_emlnet.metrics.imresize import imresize, keys_cubic, output_shape_and_scale, resize_weights, uses_every_pixel

# Keys' kernel (a = -0.5) at the offsets that scale 2 and scale 1/2 use, by hand:
#   k(t) = 1.5|t|^3 - 2.5|t|^2 + 1 (|t| <= 1);  -0.5|t|^3 + 2.5|t|^2 - 4|t| + 2 (1 < |t| <= 2)
K025, K075, K125, K175 = 0.8671875, 0.2265625, -0.0703125, -0.0234375

# Scale 2, 4 -> 8 pixels: output x samples input u = x/2 + 1/4; taps left of pixel 1 are
# clamped onto pixel 1 (replicated border), e.g. row 1 = (K175 + K075 + K025) a + K125 b.
UP_BY_2 = np.array(
    [
        [K175 + K075 + K025, K125, 0, 0],
        [K125 + K025, K075, K175, 0],
        [K175 + K075, K025, K125, 0],
        [K125, K025, K075, K175],
        [K175, K075, K025, K125],
        [0, K125, K025, K075 + K175],
        [0, K175, K075, K025 + K125],
        [0, 0, K125, K025 + K075 + K175],
    ]
)
# Scale 1/2, 4 -> 2 pixels, antialiased: kernel 0.5 * k(t / 2), 8 pixels wide, u = 2x - 1/2.
# Output 1 sits at u = 1.5 with taps j = -2..5 at t/2 = 1.75, 1.25, ..., -1.75; j <= 1 -> pixel 1,
# j = 5 -> pixel 4.
DOWN_BY_2 = 0.5 * np.array(
    [
        [K175 + K125 + K075 + K025, K025, K075, K125 + K175],
        [K125 + K175, K075, K025, K025 + K075 + K125 + K175],
    ]
)


def test_keys_kernel_values():
    t = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, -0.5, -1.5])
    expected = [1.0, K025, 0.5625, K075, 0.0, K125, -0.0625, K175, 0.0, 0.0, 0.5625, -0.0625]
    np.testing.assert_allclose(keys_cubic(t), expected, rtol=0, atol=1e-15)


def test_hand_weights_are_normalised():
    np.testing.assert_allclose(UP_BY_2.sum(1), 1.0, atol=1e-15)
    np.testing.assert_allclose(DOWN_BY_2.sum(1), 1.0, atol=1e-15)


@pytest.mark.parametrize("scale, weights", [(2.0, UP_BY_2), (0.5, DOWN_BY_2)])
def test_resize_4x4_matches_hand_weights(scale, weights):
    image = np.arange(1.0, 17.0).reshape(4, 4) ** 1.5  # not linear, so every tap matters
    expected = weights @ image @ weights.T
    np.testing.assert_allclose(imresize(image, scale=scale), expected, rtol=1e-14, atol=1e-13)
    np.testing.assert_allclose(resize_weights(4, weights.shape[0], scale).toarray(), weights, atol=1e-15)


def test_rectangular_size_form_uses_per_dimension_scales():
    image = np.random.default_rng(0).random((4, 6))
    rows = resize_weights(4, 8, 2.0).toarray()
    cols = resize_weights(6, 3, 0.5).toarray()
    np.testing.assert_allclose(imresize(image, output_shape=(8, 3)), rows @ image @ cols.T, atol=1e-14)


def test_scalar_form_rounds_size_up_and_keeps_the_given_scale():
    # 330 * 1/32 = 10.3 -> 11 outputs; the kernel maps output x to u = 32 x - 15.5 (the given
    # scale), not u = 30 x - 14.5 (11/330). Away from the borders a symmetric normalised kernel
    # reproduces a linear ramp exactly, so the ramp reveals u.
    ramp = np.tile(np.arange(1.0, 331.0), (3, 1))
    out = imresize(ramp, scale=1 / 32)
    assert out.shape == (1, 11)
    assert output_shape_and_scale((3, 330), scale=1 / 32) == ((1, 11), (1 / 32, 1 / 32))
    np.testing.assert_allclose(out[0, 3:8], 32 * np.arange(4, 9) - 15.5, rtol=0, atol=1e-9)


def test_upsampling_reproduces_a_ramp_inside_and_replicates_the_border():
    ramp = np.tile(np.arange(10.0), (2, 1))
    out = imresize(ramp, output_shape=(2, 20))
    u = np.arange(1, 21) / 2 + 0.25 - 1  # 0-based input coordinate of each output pixel
    np.testing.assert_allclose(out[0, 4:-4], u[4:-4], atol=1e-12)  # taps inside 0..9
    # first output: taps left of the image read pixel 0 (clamped), so 1.0703125 a - 0.0703125 b
    assert out[0, 0] == pytest.approx(K125 * 1.0)


def test_same_shape_is_identity_and_output_is_float64():
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = imresize(image, output_shape=(3, 4))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, image)


def test_constant_image_stays_constant():
    out = imresize(np.full((37, 53), 2.5), output_shape=(11, 90))
    np.testing.assert_allclose(out, 2.5, rtol=1e-14)


@pytest.mark.parametrize(
    "image, kwargs, message",
    [
        (np.zeros((2, 2, 3)), {"scale": 0.5}, "2-D"),
        (np.zeros((0, 4)), {"scale": 0.5}, "non-empty"),
        (np.zeros((4, 4)), {}, "exactly one"),
        (np.zeros((4, 4)), {"scale": 0.5, "output_shape": (2, 2)}, "exactly one"),
        (np.zeros((4, 4)), {"scale": -1.0}, "positive"),
        (np.zeros((4, 4)), {"output_shape": (0, 3)}, "positive"),
        (np.array([["a", "b"]]), {"scale": 2.0}, "numeric"),
    ],
)
def test_bad_arguments_raise(image, kwargs, message):
    with pytest.raises(ValueError, match=message):
        imresize(image, **kwargs)


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((20, 30), {"scale": 1 / 8}),
        ((7, 9), {"output_shape": (20, 3)}),
        ((5, 6), {"scale": 2.0}),
        ((64, 64), {"scale": 1 / 32}),
    ],
)
def test_every_pixel_reaches_the_output(shape, kwargs):
    # what uses_every_pixel promises: a NaN anywhere shows up in the resized map
    assert uses_every_pixel(shape, **kwargs)
    image = np.random.default_rng(0).random(shape)
    for index in np.ndindex(*shape):
        broken = image.copy()
        broken[index] = np.nan
        assert np.isnan(imresize(broken, **kwargs)).any(), index


@pytest.mark.parametrize("shape, scale", [((480, 640), 1 / 32), ((200, 301), 1 / 8), ((1080, 96), 1 / 32)])
def test_strong_row_shrinking_by_dense_bands_equals_the_sparse_product(shape, scale):
    # large maps shrunk to <= 1/4 along rows take small dense products: same values up to rounding
    image = np.random.default_rng(3).random(shape)
    out = imresize(image, scale=scale)
    rows = resize_weights(shape[0], out.shape[0], scale)
    cols = resize_weights(shape[1], out.shape[1], scale)
    np.testing.assert_allclose(out, np.asarray((cols @ (rows @ image).T).T), rtol=1e-14, atol=1e-15)


def test_strong_row_shrinking_still_sees_a_nan_on_every_row_and_column():
    # the banded products must keep every stored weight: a NaN on any input row/column shows
    image = np.random.default_rng(4).random((480, 640))
    rng = np.random.default_rng(5)
    positions = [(r, rng.integers(640)) for r in range(480)] + [(rng.integers(480), c) for c in range(640)]
    for index in positions:
        broken = image.copy()
        broken[index] = np.nan
        assert np.isnan(imresize(broken, scale=1 / 32)).any(), index
