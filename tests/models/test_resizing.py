"""BilinearResizeLike against a NumPy half-pixel bilinear reference; TorchNearestResize against
PyTorch's F.interpolate(mode="nearest")."""

import keras
import numpy as np

import pytest

from keras_emlnet.models.resizing import BilinearResizeLike, TorchNearestResize


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


# (in, out) sizes: the released model's at 480x640 (integer upsampling) and odd ones.
NEAREST_SIZES = [((15, 20), (240, 320)), ((120, 160), (480, 640)), ((240, 320), (480, 640)), ((3, 4), (36, 50)),
                 ((5, 7), (36, 50)), ((36, 50), (72, 100)), ((9, 13), (72, 101)), ((10, 10), (5, 4)),
                 ((7, 11), (3, 13))]


@pytest.mark.parametrize("in_size, out_size", NEAREST_SIZES)
def test_torch_nearest_resize_equals_pytorch_interpolate(in_size, out_size):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(2, *in_size, 3)).astype(np.float32)
    want = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), out_size)
    want = want.permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(TorchNearestResize(out_size)(x).numpy(), want)
    reference = np.zeros((2, *out_size, 1), np.float32)
    np.testing.assert_array_equal(TorchNearestResize()(x, reference).numpy(), want)
    # Hand check of the rule floor(dst * in / out) in exact integers (PyTorch's float32 gives the same here).
    rows = [dst * in_size[0] // out_size[0] for dst in range(out_size[0])]
    cols = [dst * in_size[1] // out_size[1] for dst in range(out_size[1])]
    np.testing.assert_array_equal(want, x[:, rows][:, :, cols])


def test_keras_nearest_differs_from_pytorch_only_off_integer_upsampling():
    """keras Resizing nearest = half-pixel floor((dst + 0.5) * in / out): equal for whole upsampling factors."""
    x = np.random.default_rng(1).normal(size=(1, 10, 10, 1)).astype(np.float32)
    for out_size, equal in (((40, 30), True), ((5, 4), False), ((13, 17), False)):
        keras_nearest = keras.layers.Resizing(*out_size, interpolation="nearest")(x).numpy()
        torch_nearest = TorchNearestResize(out_size)(x).numpy()
        assert np.array_equal(keras_nearest, torch_nearest) == equal, out_size


def test_torch_nearest_resize_round_trips_its_config():
    layer = TorchNearestResize((6, 8), name="up")
    copy = TorchNearestResize.from_config(layer.get_config())
    assert copy.size == (6, 8) and copy.name == "up"
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)
    np.testing.assert_array_equal(copy(x).numpy(), layer(x).numpy())
    with pytest.raises(ValueError, match="size"):
        TorchNearestResize((0, 3))
