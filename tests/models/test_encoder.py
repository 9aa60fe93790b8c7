"""build_encoder over the tiny spec: grafting, head formula, weights, errors, round trip."""

import json

import keras
import numpy as np
import pytest

from keras_emlnet import build_encoder, load_model
from keras_emlnet.models.encoder import SaliencyEncoder
from keras_emlnet.models.extractor import encoder_prefix
from keras_emlnet.models.taps import find_tap_layers, tap_layer_name
from keras_emlnet.testing import tiny_backbone_spec, tiny_encoder

SHAPE = (32, 48, 3)


@pytest.fixture
def images(rng):
    return rng.uniform(0, 255, size=(2,) + SHAPE).astype(np.float32)


def _source_features(source, images):
    """The bare backbone's tapped outputs, fed with independently preprocessed inputs."""
    layers = [source.get_layer("conv1").output, source.get_layer("conv2_bn").output, source.output]
    return keras.Model(source.input, layers)(images / 127.5 - 1.0)


def _encoder_features(encoder):
    return keras.Model(encoder.input, [layer.output for layer in find_tap_layers(encoder).values()])


def test_taps_equal_the_backbone_it_was_built_from(images):
    spec = tiny_backbone_spec("tiny", seed=3)
    encoder = build_encoder(spec, input_size=SHAPE[:2])
    source = spec.constructor(SHAPE, None)  # seeded: the same weights build_encoder copied
    for got, want in zip(_encoder_features(encoder)(images), _source_features(source, images)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


def test_head_is_conv_relu_bilinear_upsample(images):
    encoder = build_encoder(tiny_backbone_spec("tiny"), input_size=SHAPE[:2], seed=0)
    final = keras.Model(encoder.input, encoder.get_layer(tap_layer_name("tiny", "final")).output)(images).numpy()
    kernel = encoder.get_layer("tiny_head_conv").get_weights()[0][0, 0, :, 0]
    low = np.maximum(final @ kernel, 0.0)[..., None]
    want = keras.ops.image.resize(low, SHAPE[:2], interpolation="bilinear").numpy()
    got = encoder(images).numpy()
    assert got.shape == (2, 32, 48, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got.max() > 0  # not a dead map


def test_model_and_layer_names_come_from_the_prefix():
    encoder = build_encoder(tiny_backbone_spec("tiny"), input_size=SHAPE[:2], prefix="other")
    assert encoder.name == "other_encoder"
    assert list(find_tap_layers(encoder)) == ["other_tap_s2", "other_tap_s4", "other_tap_final"]
    assert all(layer.name.startswith("other_") for layer in encoder.layers)


def test_two_encoders_join_one_graph(images):
    a = build_encoder(tiny_backbone_spec("tiny"), input_size=SHAPE[:2], prefix="a")
    b = build_encoder(tiny_backbone_spec("tiny"), input_size=SHAPE[:2], prefix="b")
    inputs = keras.Input(SHAPE)
    joined = keras.Model(inputs, [a(inputs), b(inputs)])  # would fail on clashing layer names
    assert len(joined(images)) == 2


def test_keras_round_trip_keeps_outputs_and_taps(tmp_path, images):
    encoder = build_encoder(tiny_backbone_spec("tiny"), input_size=SHAPE[:2], seed=1)
    path = tmp_path / "tiny.keras"
    encoder.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects: layers are registered
    np.testing.assert_array_equal(loaded(images).numpy(), encoder(images).numpy())
    assert list(find_tap_layers(loaded)) == list(find_tap_layers(encoder))
    for got, want in zip(_encoder_features(loaded)(images), _encoder_features(encoder)(images)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_encoder_carries_its_metadata():
    encoder = build_encoder(tiny_backbone_spec("tiny"), input_size=SHAPE[:2], prefix="other")
    assert isinstance(encoder, SaliencyEncoder) and isinstance(encoder, keras.Model)
    assert (encoder.backbone, encoder.tap_prefix, encoder.input_size) == ("tiny", "other", (32, 48))
    assert encoder_prefix(encoder) == "other"
    config = encoder.get_config()
    assert (config["backbone"], config["tap_prefix"], config["input_size"]) == ("tiny", "other", [32, 48])
    dynamic = build_encoder(tiny_backbone_spec("tiny"), input_size=(None, None))
    assert dynamic.input_size == (None, None)


def test_config_round_trip_rebuilds_the_same_graph_and_metadata(images):
    encoder = build_encoder(tiny_backbone_spec("tiny"), input_size=SHAPE[:2], seed=2)
    config = encoder.get_config()
    rebuilt = SaliencyEncoder.from_config(config)
    assert isinstance(rebuilt, SaliencyEncoder)
    assert rebuilt.get_config() == config
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in encoder.layers]
    rebuilt.set_weights(encoder.get_weights())  # from_config creates fresh variables
    np.testing.assert_array_equal(rebuilt(images).numpy(), encoder(images).numpy())
    # the same graph through Keras's generic (de)serialisation
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(encoder))
    assert type(again) is SaliencyEncoder and again.get_config() == config


def test_config_that_disagrees_with_its_graph_is_rejected():
    config = build_encoder(tiny_backbone_spec("tiny"), input_size=SHAPE[:2]).get_config()
    with pytest.raises(ValueError, match="input_size"):
        SaliencyEncoder.from_config({**config, "input_size": [64, 96]})
    with pytest.raises(ValueError, match="'other'"):
        SaliencyEncoder.from_config({**config, "tap_prefix": "other"})


def test_keras_file_keeps_metadata_and_weights(tmp_path, images):
    encoder = tiny_encoder("tiny_d", input_size=(40, 56), seed=5)
    path = tmp_path / "tiny_d.keras"
    encoder.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, SaliencyEncoder)
    assert (loaded.backbone, loaded.tap_prefix, loaded.input_size) == ("tiny_d", "tiny_d", (40, 56))
    # (the saved config is JSON: tuples come back as lists)
    assert json.loads(json.dumps(loaded.get_config())) == json.loads(json.dumps(encoder.get_config()))
    for got, want in zip(loaded.weights, encoder.weights):
        assert got.path == want.path
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    other = np.random.default_rng(1).uniform(0, 255, (2, 40, 56, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(other).numpy(), encoder(other).numpy())


def test_plain_functional_encoder_prefix_is_read_from_its_taps():
    # e.g. an encoder saved before encoders carried their metadata
    encoder = build_encoder(tiny_backbone_spec("tiny"), input_size=SHAPE[:2], prefix="plain")
    functional = keras.Model(encoder.input, encoder.output)
    assert not isinstance(functional, SaliencyEncoder)
    assert encoder_prefix(functional) == "plain"


def test_weights_path_loads_into_the_backbone(tmp_path, images):
    spec = tiny_backbone_spec("tiny")
    source = spec.constructor(SHAPE, None)
    for variable in source.weights:  # change everything, BN statistics included
        variable.assign(variable.numpy() * 0.5 + 0.25)
    path = tmp_path / "backbone.weights.h5"
    source.save_weights(path)
    encoder = build_encoder(spec, weights=str(path), input_size=SHAPE[:2])
    for got, want in zip(_encoder_features(encoder)(images), _source_features(source, images)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


def test_missing_weights_file_is_named(tmp_path):
    path = tmp_path / "nope.weights.h5"
    with pytest.raises(FileNotFoundError, match="nope.weights.h5"):
        build_encoder(tiny_backbone_spec(), weights=str(path), input_size=SHAPE[:2])


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_unfitting_weights_file_is_named(tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(ValueError, match="other.weights.h5"):
        build_encoder(tiny_backbone_spec(), weights=str(path), input_size=SHAPE[:2])


def test_weights_file_of_a_larger_model_is_rejected(tmp_path):
    spec = tiny_backbone_spec()
    source = spec.constructor(SHAPE, None)
    bigger = keras.Model(source.input, keras.layers.Conv2D(4, 1, name="extra")(source.output))
    path = tmp_path / "bigger.weights.h5"
    bigger.save_weights(path)
    with pytest.raises(ValueError, match=r"bigger.weights.h5 holds 12 variables but backbone 'tiny' has 10"):
        build_encoder(spec, weights=str(path), input_size=SHAPE[:2])


def test_unknown_named_weights_lists_the_named_sources():
    with pytest.raises(FileNotFoundError, match=r"'imagenet22k'.*\['imagenet'\]"):
        build_encoder("nasnet", weights="imagenet22k", input_size=(32, 32))


@pytest.mark.parametrize("size, match", [((32, 48, 3), r"\(H, W\)"), ((4, 48), ">= 8"), ((32,), r"\(H, W\)")])
def test_bad_input_sizes_are_rejected(size, match):
    with pytest.raises(ValueError, match=match):
        build_encoder(tiny_backbone_spec(), input_size=size)


def test_deprecated_input_shape_still_builds_and_checks_rgb():
    with pytest.warns(DeprecationWarning, match="input_size"):
        encoder = build_encoder(tiny_backbone_spec(), input_shape=(32, 48, 3))
    assert encoder.input_shape == (None, 32, 48, 3)
    with pytest.raises(ValueError, match="RGB"), pytest.warns(DeprecationWarning):
        build_encoder(tiny_backbone_spec(), input_shape=(32, 48, 1))


def test_dynamic_input_shape_gives_maps_at_each_input_size(rng):
    encoder = build_encoder(tiny_backbone_spec(), input_size=(None, None))
    for size in [(32, 48), (40, 40)]:
        maps = encoder(rng.uniform(0, 255, size=(1,) + size + (3,)).astype(np.float32))
        assert maps.shape == (1,) + size + (1,)


def test_float32_output_under_mixed_precision(images):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        encoder = build_encoder(tiny_backbone_spec(), input_size=SHAPE[:2])
    finally:
        keras.config.set_dtype_policy(previous)
    assert encoder.get_layer("tiny_conv1").compute_dtype == "bfloat16"
    assert keras.backend.standardize_dtype(encoder(images).dtype) == "float32"
