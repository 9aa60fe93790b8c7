import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from keras_emlnet.models import geometry
from keras_emlnet.models import postprocess


def _numpy_output_mode(saliency_map, output_mode):
    """Independent NumPy version of the documented formulas, for one (h, w) map."""
    x = np.asarray(saliency_map, np.float64)
    if output_mode == "raw":
        return x
    if output_mode == "minmax":
        span = x.max() - x.min()
        return np.zeros_like(x) if span == 0 else (x - x.min()) / span
    positive = np.maximum(x, 0)
    uniform = np.full_like(x, 1.0 / x.size)
    density = positive / positive.sum() if positive.sum() > 0 else uniform
    density = (1 - postprocess.DENSITY_FLOOR) * density + postprocess.DENSITY_FLOOR * uniform
    return density if output_mode == "probability" else np.log(density)


@pytest.mark.parametrize("sigma", [0.7, 1.5, 5.0])
def test_gaussian_blur_matches_scipy_nearest_mode(rng, sigma):
    # sigma 5 at 12x17 has a radius (20) larger than the map: edges must
    # extend as in scipy's "nearest" mode, not wrap or zero-pad.
    maps = rng.uniform(0, 3, size=(2, 12, 17, 1)).astype(np.float32)
    blurred = postprocess.gaussian_blur(maps, sigma).numpy()
    assert blurred.shape == maps.shape
    for index in range(2):
        reference = scipy.ndimage.gaussian_filter(
            maps[index, :, :, 0].astype(np.float64), sigma, mode="nearest", truncate=4.0
        )
        np.testing.assert_allclose(blurred[index, :, :, 0], reference, rtol=1e-5, atol=1e-5)


def test_gaussian_blur_works_on_dynamic_sizes_and_channels(rng):
    blur = tf.function(
        lambda m: postprocess.gaussian_blur(m, 2.0),
        input_signature=[tf.TensorSpec((None, None, None, 2), tf.float32)],
    )
    maps = rng.uniform(size=(1, 9, 14, 2)).astype(np.float32)
    blurred = blur(maps).numpy()
    for channel in range(2):
        reference = scipy.ndimage.gaussian_filter(maps[0, :, :, channel], 2.0, mode="nearest")
        np.testing.assert_allclose(blurred[0, :, :, channel], reference, rtol=1e-5, atol=1e-6)


def test_gaussian_kernel_radius_and_mass():
    kernel = postprocess.gaussian_kernel_1d(5.0)
    assert kernel.shape == (41,)  # radius int(4 * 5 + 0.5) = 20
    assert kernel.sum() == pytest.approx(1.0, abs=1e-6)
    assert kernel.argmax() == 20
    with pytest.raises(ValueError, match="sigma"):
        postprocess.gaussian_kernel_1d(0.0)


@pytest.mark.parametrize("output_mode", ["minmax", "probability", "log_density", "raw"])
def test_output_modes_match_numpy_formulas(rng, output_mode):
    maps = rng.normal(1.0, 1.0, size=(3, 7, 9, 1)).astype(np.float32)
    maps[1] = 2.5  # constant map
    maps[2] = np.minimum(maps[2], 0.0)  # nothing positive
    result = postprocess.apply_output_mode(maps, output_mode).numpy()
    for index in range(3):
        np.testing.assert_allclose(
            result[index, :, :, 0], _numpy_output_mode(maps[index, :, :, 0], output_mode), rtol=2e-5, atol=1e-6
        )


def test_output_mode_invariants(rng):
    maps = rng.gamma(1.0, size=(2, 30, 40, 1)).astype(np.float32)
    minmax = postprocess.apply_output_mode(maps, "minmax").numpy()
    assert np.allclose(minmax.min(axis=(1, 2, 3)), 0) and np.allclose(minmax.max(axis=(1, 2, 3)), 1)
    probability = postprocess.apply_output_mode(maps, "probability").numpy()
    np.testing.assert_allclose(probability.sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    log_density = postprocess.apply_output_mode(maps, "log_density").numpy()
    assert np.isfinite(log_density).all()
    np.testing.assert_allclose(np.exp(log_density).sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.exp(log_density), probability, rtol=1e-5)
    with pytest.raises(ValueError, match="output_mode"):
        postprocess.apply_output_mode(maps, "softmax")


@pytest.mark.parametrize("resize_mode", ["resize", "pad_to_4_3"])
@pytest.mark.parametrize("output_mode", ["minmax", "probability", "log_density", "raw"])
@pytest.mark.parametrize("original_size", [(33, 71), (50, 20), (7, 5)])
def test_tf_to_original_size_matches_numpy_geometry(rng, resize_mode, output_mode, original_size):
    raw = rng.gamma(2.0, size=(24, 32)).astype(np.float32)
    model_map = _numpy_output_mode(raw, output_mode).astype(np.float32)
    # reference: NumPy geometry (bilinear back to the original frame, crop the
    # padding), then the mode's normalisation in the probability domain.
    to_resize = np.exp(model_map) if output_mode == "log_density" else model_map
    back = geometry.make_geometry(original_size, (24, 32), resize_mode).map_to_original(to_resize)
    expected = _numpy_output_mode(back, output_mode)

    result = postprocess.tf_to_original_size(model_map[..., None], original_size, resize_mode, output_mode)
    assert result.shape == original_size + (1,)
    np.testing.assert_allclose(result.numpy()[..., 0], expected, rtol=1e-4, atol=1e-6)
    if output_mode == "probability":
        assert result.numpy().sum() == pytest.approx(1.0, rel=1e-5)


def test_tf_to_original_size_in_a_graph_with_dynamic_size(rng):
    convert = tf.function(
        lambda m, size: postprocess.tf_to_original_size(m, size, "pad_to_4_3", "probability"),
        input_signature=[tf.TensorSpec((None, None, 1), tf.float32), tf.TensorSpec((2,), tf.int32)],
    )
    model_map = postprocess.apply_output_mode(rng.gamma(2.0, size=(1, 24, 32, 1)), "probability")[0]
    for size in [(13, 40), (40, 13)]:
        result = convert(model_map, tf.constant(size, tf.int32)).numpy()
        assert result.shape == size + (1,)
        assert result.sum() == pytest.approx(1.0, rel=1e-5)


def test_paper_blur_is_5_px_at_480x640_scaled_with_the_height():
    assert postprocess.paper_blur_sigma((480, 640)) == 5.0
    assert postprocess.paper_blur_sigma((96, 128)) == pytest.approx(1.0)
    assert postprocess.describe("minmax", 5.0, (480, 640)) == "Gaussian blur sigma 5 px at 480x640 (the paper's), minmax"
    assert postprocess.describe("probability", 2.0, (480, 640)) == "Gaussian blur sigma 2 px at 480x640, probability"
    assert postprocess.describe("minmax", None, (480, 640)) == "no blur, minmax"
