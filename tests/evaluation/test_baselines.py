"""keras_emlnet.evaluation.baselines: the center-bias Gaussian against its formula, folder-map lookup and loading."""

import numpy as np
import pytest
from PIL import Image

from keras_emlnet.evaluation import baselines


def test_center_bias_matches_the_formula():
    height, width, s = 5, 8, 0.25
    expected = np.array([
        [np.exp(-0.5 * (((r - 2.0) / (s * height)) ** 2 + ((c - 3.5) / (s * width)) ** 2))
         for c in range(width)]
        for r in range(height)
    ])
    np.testing.assert_allclose(baselines.center_bias_map((height, width), sigma_fraction=s), expected)


def test_center_bias_is_symmetric_with_peak_at_the_centre():
    saliency_map = baselines.center_bias_map((7, 9))
    assert saliency_map.max() == saliency_map[3, 4] == 1.0
    np.testing.assert_allclose(saliency_map, saliency_map[::-1, ::-1])
    with pytest.raises(ValueError):
        baselines.center_bias_map((0, 4))
    with pytest.raises(ValueError):
        baselines.center_bias_map((4, 4), sigma_fraction=0)


def test_folder_maps_prefer_the_category_folder_and_read_images_and_npy(tmp_path):
    (tmp_path / "Action").mkdir()
    Image.fromarray(np.full((4, 6), 200, np.uint8)).save(str(tmp_path / "Action" / "001.png"))
    Image.fromarray(np.full((4, 6), 50, np.uint8)).save(str(tmp_path / "001.png"))
    np.save(str(tmp_path / "002.npy"), np.arange(6.0).reshape(2, 3))
    maps = baselines.FolderMaps(str(tmp_path))
    np.testing.assert_array_equal(maps("001", "Action"), np.full((4, 6), 200.0))
    np.testing.assert_array_equal(maps("001.jpg"), np.full((4, 6), 50.0))
    np.testing.assert_array_equal(maps("002"), np.arange(6.0).reshape(2, 3))
    with pytest.raises(FileNotFoundError, match="003"):
        maps("003")


def test_bad_maps_raise_naming_the_file(tmp_path):
    np.save(str(tmp_path / "cube.npy"), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="cube.npy"):
        baselines.load_map(str(tmp_path / "cube.npy"))
    (tmp_path / "broken.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="broken.png"):
        baselines.load_map(str(tmp_path / "broken.png"))
    with pytest.raises(FileNotFoundError, match="missing"):
        baselines.FolderMaps(str(tmp_path / "missing"))
