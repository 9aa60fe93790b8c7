"""BackbonePreprocessing: each mode against its NumPy formula; config round trip."""

import keras
import numpy as np
import pytest

from keras_emlnet.models.preprocessing import BackbonePreprocessing

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@pytest.fixture
def images(rng):
    return rng.uniform(0, 255, size=(2, 5, 7, 3)).astype(np.float32)


@pytest.mark.parametrize(
    "mode, formula",
    [
        ("tf", lambda x: x / 127.5 - 1.0),
        ("torch", lambda x: (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD),
        ("caffe", lambda x: x[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)),
        ("none", lambda x: x),
    ],
)
def test_modes_match_formulas(images, mode, formula):
    got = BackbonePreprocessing(mode)(images).numpy()
    np.testing.assert_allclose(got, formula(images), rtol=1e-6, atol=1e-5)


def test_tf_mode_maps_the_ends_of_the_range():
    got = BackbonePreprocessing("tf")(np.array([[[[0.0, 127.5, 255.0]]]], np.float32)).numpy()
    np.testing.assert_allclose(got, [[[[-1.0, 0.0, 1.0]]]])


def test_caffe_mode_swaps_red_and_blue():
    got = BackbonePreprocessing("caffe")(np.array([[[[200.0, 100.0, 0.0]]]], np.float32)).numpy()
    np.testing.assert_allclose(got, [[[[0.0 - 103.939, 100.0 - 116.779, 200.0 - 123.68]]]], rtol=1e-6)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="'caffe2'"):
        BackbonePreprocessing("caffe2")


def test_config_round_trip(images):
    layer = BackbonePreprocessing("torch", name="x_preprocessing")
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert clone.get_config() == layer.get_config()
    assert clone.mode == "torch" and clone.name == "x_preprocessing"
    np.testing.assert_array_equal(clone(images).numpy(), layer(images).numpy())


def test_mixed_precision_computes_in_bfloat16(images):
    out = BackbonePreprocessing("tf", dtype="mixed_bfloat16")(images)
    assert str(out.dtype) in ("bfloat16", "<dtype: 'bfloat16'>")
