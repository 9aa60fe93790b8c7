"""keras_emlnet.inference.visualize: 8-bit maps, the jet colormap and overlays against hand-computed values."""

import numpy as np
import pytest

from keras_emlnet.inference import visualize


def test_map_to_uint8_is_minmax_scaled_and_rounded():
    saliency_map = np.array([[2.0, 3.0], [4.0, 6.0]])
    expected = np.rint(np.array([[0.0, 0.25], [0.5, 1.0]]) * 255).astype(np.uint8)
    np.testing.assert_array_equal(visualize.map_to_uint8(saliency_map), expected)
    np.testing.assert_array_equal(visualize.map_to_uint8(saliency_map[..., None]), expected)


def test_constant_map_becomes_zeros_and_bad_values_raise():
    np.testing.assert_array_equal(visualize.map_to_uint8(np.full((3, 4), 7.0)), 0)
    with pytest.raises(ValueError, match="NaN or inf"):
        visualize.map_to_uint8(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="2-D"):
        visualize.map_to_uint8(np.zeros((2, 2, 2)))


def test_jet_colormap_key_points():
    # jet: dark blue at 0, blue at 1/8 + ..., green at 1/2, dark red at 1.
    colors = visualize.jet_colormap(np.array([0.0, 0.5, 1.0]))
    np.testing.assert_array_equal(colors[0], [0, 0, 128])
    np.testing.assert_array_equal(colors[1], [128, 255, 128])
    np.testing.assert_array_equal(colors[2], [128, 0, 0])


def test_overlay_blends_by_map_weight():
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    saliency_map = np.array([[0.0, 0.0], [0.0, 1.0]])
    out = visualize.overlay(image, saliency_map, alpha=0.5)
    # where the map is 0 the image is untouched; at the max: 0.5 * image + 0.5 * jet(1)
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])
    np.testing.assert_array_equal(out[1, 1], np.rint(0.5 * 100 + 0.5 * np.array([128, 0, 0])))


def test_overlay_resizes_the_map_to_the_image():
    image = np.zeros((6, 8, 3), dtype=np.uint8)
    out = visualize.overlay(image, np.arange(12.0).reshape(3, 4))
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    assert out[-1, -1].sum() > out[0, 0].sum()  # brighter where the map is high
    with pytest.raises(ValueError, match="alpha"):
        visualize.overlay(image, np.ones((6, 8)), alpha=1.5)
