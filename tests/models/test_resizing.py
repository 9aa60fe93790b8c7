"""BilinearResizeLike against a NumPy half-pixel bilinear reference."""

import keras
import numpy as np

from keras_emlnet.models.resizing import BilinearResizeLike


def _bilinear_axis_weights(in_size, out_size):
    """(out, in) matrix of half-pixel bilinear weights, sources clamped to the image."""
    weights = np.zeros((out_size, in_size))
    for i in range(out_size):
        src = np.clip((i + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
        low = int(np.floor(src))
        high = min(low + 1, in_size - 1)
        weights[i, low] += 1 - (src - low)
        weights[i, high] += src - low
    return weights


def numpy_bilinear(x, height, width):
    rows = _bilinear_axis_weights(x.shape[1], height)
    cols = _bilinear_axis_weights(x.shape[2], width)
    return np.einsum("hi,bijc,wj->bhwc", rows, x, cols)


def test_matches_numpy_reference(rng):
    x = rng.normal(size=(2, 3, 5, 2)).astype(np.float32)
    reference = np.zeros((2, 12, 20, 3), np.float32)
    got = BilinearResizeLike()(x, reference).numpy()
    np.testing.assert_allclose(got, numpy_bilinear(x, 12, 20), atol=1e-5)


def test_size_comes_from_the_reference_at_run_time(rng):
    x_in = keras.Input((None, None, 1))
    ref_in = keras.Input((None, None, 3))
    model = keras.Model([x_in, ref_in], BilinearResizeLike()(x_in, ref_in))
    x = rng.normal(size=(1, 4, 4, 1)).astype(np.float32)
    for size in [(8, 8), (6, 10)]:
        out = model([x, np.zeros((1,) + size + (3,), np.float32)]).numpy()
        np.testing.assert_allclose(out, numpy_bilinear(x, *size), atol=1e-5)


def test_float32_output_from_bfloat16_input(rng):
    x = keras.ops.cast(rng.normal(size=(1, 2, 2, 1)), "bfloat16")
    out = BilinearResizeLike(dtype="float32")(x, np.zeros((1, 4, 4, 3), np.float32))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_config_round_trip():
    layer = BilinearResizeLike(name="up", dtype="float32")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert clone.get_config() == layer.get_config() and clone.name == "up"
