"""Registry entries: taps (names, channels, strides), head size, output, at small inputs.

Each real backbone is built once per module (NASNetLarge alone takes ~15 s).
"""

import numpy as np
import pytest

from keras_emlnet import build_encoder
from keras_emlnet.models.backbones import BACKBONES, BackboneSpec, get_backbone
from keras_emlnet.models.taps import find_tap_layers, tap_layer_name

# Smallest sizes that keep every stride visible; non-square catches an H/W swap.
INPUT_SHAPES = {"nasnet": (96, 128, 3), "densenet161": (64, 96, 3), "resnet50": (64, 96, 3)}
EXPECTED_TAPS = {  # the numbers, written out independently of the registry
    "nasnet": [("reduce6", 1344, 16), ("reduce12", 2688, 32), ("final", 4032, 32)],
    "densenet161": [("block1", 384, 4), ("block2", 768, 8), ("block3", 2112, 16), ("final", 2208, 32)],
    "resnet50": [("stage2", 256, 4), ("stage3", 512, 8), ("stage4", 1024, 16), ("final", 2048, 32)],
}
HEAD_WEIGHTS = {"nasnet": 4032, "densenet161": 2208, "resnet50": 2048}


@pytest.fixture(scope="module", params=sorted(BACKBONES))
def encoder(request):
    return request.param, build_encoder(request.param, input_size=INPUT_SHAPES[request.param][:2])


def test_registry_holds_the_three_backbones():
    assert sorted(BACKBONES) == ["densenet161", "nasnet", "resnet50"]
    assert get_backbone("nasnet") is BACKBONES["nasnet"]
    spec = BACKBONES["resnet50"]
    assert get_backbone(spec) is spec and isinstance(spec, BackboneSpec)
    with pytest.raises(ValueError, match="unknown backbone 'vgg16'.*densenet161"):
        get_backbone("vgg16")


def test_spec_taps_match_the_paper():
    for name, expected in EXPECTED_TAPS.items():
        spec = BACKBONES[name]
        assert [(t.name, t.channels, t.stride) for t in spec.taps] == expected
        assert spec.final_channels == expected[-1][1]
    assert BACKBONES["nasnet"].requires_static_input_shape
    assert {s.preprocessing for s in BACKBONES.values()} == {"tf", "torch", "caffe"}


def test_taps_have_stable_names_channels_and_strides(encoder):
    name, model = encoder
    height, width, _ = INPUT_SHAPES[name]
    expected = [tap_layer_name(name, tap) for tap, _, _ in EXPECTED_TAPS[name]]
    assert list(find_tap_layers(model)) == expected  # graph order: shallow to deep
    for tap, channels, stride in EXPECTED_TAPS[name]:
        shape = model.get_layer(tap_layer_name(name, tap)).output.shape
        assert shape[1:] == (height // stride, width // stride, channels), tap


def test_head_is_one_bias_free_1x1_conv(encoder):
    name, model = encoder
    head = model.get_layer(f"{name}_head_conv")
    assert head.count_params() == HEAD_WEIGHTS[name]
    assert [tuple(w.shape) for w in head.weights] == [(1, 1, HEAD_WEIGHTS[name], 1)]
    assert model.name == f"{name}_encoder"
    assert model.get_layer(f"{name}_preprocessing").mode == BACKBONES[name].preprocessing


def test_output_is_a_nonnegative_float32_map_at_the_input_size(encoder, rng):
    name, model = encoder
    images = rng.uniform(0, 255, size=(1,) + INPUT_SHAPES[name]).astype(np.float32)
    maps = model(images).numpy()
    assert maps.shape == (1,) + INPUT_SHAPES[name][:2] + (1,)
    assert maps.dtype == np.float32
    assert maps.min() >= 0.0


def test_every_backbone_layer_is_prefixed(encoder):
    # Two encoders can join one functional graph only with disjoint layer names.
    name, model = encoder
    assert all(layer.name.startswith(f"{name}_") for layer in model.layers)


def test_nasnet_needs_a_static_input_shape():
    with pytest.raises(ValueError, match="static input shape"):
        build_encoder("nasnet", input_size=(None, None))


def test_keras_applications_h5_file_loads_as_weights_path(tmp_path):
    """The offline route for "imagenet": weights=PATH to a keras.applications-style .h5 file."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    source = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    kernel = source.get_layer("conv1_conv").kernel
    kernel.assign(kernel.numpy() + 1.0)  # differs from any fresh initialisation
    path = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:  # the legacy layout the Keras download files use
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    encoder = build_encoder("resnet50", weights=str(path), input_size=(32, 32))
    np.testing.assert_array_equal(encoder.get_layer("resnet50_conv1_conv").kernel.numpy(), kernel.numpy())


def test_paper_backbones_default_to_their_pretrained_weights():
    assert {name: spec.default_weights for name, spec in BACKBONES.items()} == {
        "nasnet": "imagenet", "densenet161": "places365", "resnet50": "imagenet"}
    assert all(spec.default_weights in spec.weight_sources for spec in BACKBONES.values())


def test_missing_imagenet_weights_that_cannot_be_downloaded_name_the_expected_file(tmp_path, monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- offline")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(file_utils, "get_file", offline)
    expected = tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with pytest.raises(FileNotFoundError, match=f"not at {expected}.*--weights none"):
        BACKBONES["resnet50"].constructor((32, 32, 3), "imagenet")
