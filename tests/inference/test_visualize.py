"""keras_emlnet.inference.visualize: 8-bit maps, the viridis colormap and overlays against reference values."""

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


# matplotlib's viridis table (256 entries, `_viridis_data` in matplotlib/_cm_listed.py)
# at these indices, as 8-bit RGB: index i is the colour of value i / 255.
VIRIDIS_REFERENCE = {
    0: (68, 1, 84),  # #440154
    32: (71, 45, 123),
    64: (59, 82, 139),
    100: (42, 118, 142),
    128: (33, 145, 140),  # #21918c
    160: (40, 174, 128),
    192: (94, 201, 98),
    224: (173, 220, 48),
    255: (253, 231, 37),  # #fde725
}


def test_viridis_matches_matplotlib_reference_values():
    indices = np.array(sorted(VIRIDIS_REFERENCE))
    colors = visualize.viridis_colormap(indices / 255.0).astype(int)
    want = np.array([VIRIDIS_REFERENCE[i] for i in indices])
    assert np.abs(colors - want).max() <= 2
    np.testing.assert_array_equal(colors[[0, -1]], want[[0, -1]])  # the ends are exact
    # out-of-range values clip to the ends; any shape maps to (..., 3)
    np.testing.assert_array_equal(visualize.viridis_colormap(np.array([[-1.0, 2.0]])), [want[[0, -1]]])


def test_viridis_lightness_rises_monotonically():
    # Rec. 709 luma of the 8-bit colours, strictly rising over 64 steps: brighter = more salient.
    colors = visualize.viridis_colormap(np.linspace(0.0, 1.0, 64)).astype(float)
    luma = colors @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(luma) > 0)


def test_overlay_opacity_is_zero_where_the_map_is_zero_and_rises_monotonically():
    values = np.linspace(0.0, 1.0, 101)
    opacity = visualize.overlay_opacity(values, alpha=0.7)
    assert opacity[0] == 0.0 and opacity[-1] == pytest.approx(0.7)
    assert np.all(np.diff(opacity) > 0)
    with pytest.raises(ValueError, match="alpha"):
        visualize.overlay_opacity(values, alpha=-0.1)


def test_overlay_blends_by_map_weight():
    image = np.full((2, 3, 3), 100, dtype=np.uint8)
    saliency_map = np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 1.0]])
    out = visualize.overlay(image, saliency_map, alpha=0.5)
    # where the map is 0 the photo is untouched, whatever the colormap says there
    np.testing.assert_array_equal(out[0], image[0])
    np.testing.assert_array_equal(out[1, 0], [100, 100, 100])
    # at m: (1 - 0.5 m) * image + 0.5 m * viridis(m)
    for column, m in ((1, 0.5), (2, 1.0)):
        color = np.array(VIRIDIS_REFERENCE[128 if m == 0.5 else 255], dtype=float)
        want = (1 - 0.5 * m) * 100 + 0.5 * m * color
        assert np.abs(out[1, column].astype(float) - want).max() <= 1.5


def test_overlay_resizes_the_map_to_the_image():
    image = np.zeros((6, 8, 3), dtype=np.uint8)
    out = visualize.overlay(image, np.arange(12.0).reshape(3, 4))
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    assert out[-1, -1].sum() > out[0, 0].sum()  # brighter where the map is high
    with pytest.raises(ValueError, match="alpha"):
        visualize.overlay(image, np.ones((6, 8)), alpha=1.5)
