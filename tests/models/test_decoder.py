import keras
import numpy as np
import pytest

from keras_emlnet.models.decoder import build_decoder
from keras_emlnet.models.extractor import build_feature_extractor, tap_shapes
from keras_emlnet.models.geometry import bilinear_resize
from keras_emlnet.testing import tiny_encoder

TINY_SHAPES = {
    "tiny_a_tap_s2": (16, 24, 8),
    "tiny_a_tap_s4": (8, 12, 12),
    "tiny_a_tap_final": (4, 6, 16),
    "tiny_b_tap_s2": (16, 24, 8),
    "tiny_b_tap_s4": (8, 12, 12),
    "tiny_b_tap_final": (4, 6, 16),
}
# The paper's seven taps (NASNet reduction cells + last layer, DenseNet-161
# blocks 1-3 + last layer) and their channels.
PAPER_CHANNELS = {
    "nasnet_tap_reduce6": 1344,
    "nasnet_tap_reduce12": 2688,
    "nasnet_tap_final": 4032,
    "densenet161_tap_block1": 384,
    "densenet161_tap_block2": 768,
    "densenet161_tap_block3": 2112,
    "densenet161_tap_final": 2208,
}


def test_paper_decoder_from_the_registered_taps_has_13543_weights():
    # Fast: the taps the backbone registry declares, at the paper's 480x640.
    from keras_emlnet.models.backbones import get_backbone

    shapes = {}
    for backbone in ("nasnet", "densenet161"):
        for tap in get_backbone(backbone).taps:
            shapes[f"{backbone}_tap_{tap.name}"] = (480 // tap.stride, 640 // tap.stride, tap.channels)
    assert {name: shape[-1] for name, shape in shapes.items()} == PAPER_CHANNELS
    decoder = build_decoder(shapes, (480, 640))
    assert decoder.count_params() == 13543
    # largest tap: DenseNet-161 block 1 at stride 4, 120x160 (paper §3.3)
    assert decoder.get_layer("decoder_fuse_conv").output.shape[1:3] == (120, 160)
    assert decoder.output.shape[1:] == (480, 640, 1)


@pytest.fixture(scope="module")
def paper_extractor():
    # Weight counts do not depend on the input size: build the real backbones
    # (random weights, no download) once, at the smallest size they accept.
    from keras_emlnet.models.encoder import build_encoder

    encoders = [build_encoder(name, input_size=(32, 32)) for name in ("nasnet", "densenet161")]
    return build_feature_extractor(encoders)


@pytest.mark.slow  # builds NASNetLarge and DenseNet-161 (~30-60 s on 2 CPUs)
def test_built_paper_extractor_taps_and_13543_weights(paper_extractor):
    shapes = tap_shapes(paper_extractor)
    assert {name: shape[-1] for name, shape in shapes.items()} == PAPER_CHANNELS
    assert sum(PAPER_CHANNELS.values()) == 13536
    decoder = build_decoder(shapes, (32, 32))
    assert decoder.count_params() == 13543
    assert sum(int(np.prod(w.shape)) for w in decoder.trainable_weights) == 13543
    # largest tap: DenseNet block 1 at stride 4 (120x160 at 480x640)
    assert decoder.get_layer("decoder_fuse_conv").output.shape[1:3] == (8, 8)


def test_weight_count_formula_on_tiny_taps():
    decoder = build_decoder(TINY_SHAPES, (32, 48))
    # one 1x1 weight per channel of every tap + one fusing weight per tap
    assert decoder.count_params() == 2 * (8 + 12 + 16) + 6 == 78
    assert decoder.non_trainable_weights == []


def _numpy_decoder(features, decoder, input_size):
    """Reference forward pass from the paper's description, in NumPy."""
    names = list(features)
    sizes = {name: features[name].shape[1:3] for name in names}
    fused_size = max(sizes.values(), key=lambda hw: hw[0] * hw[1])
    fuse = decoder.get_layer("decoder_fuse_conv").get_weights()[0].reshape(-1)
    batch = next(iter(features.values())).shape[0]
    output = np.zeros((batch,) + tuple(input_size), np.float64)
    for b in range(batch):
        maps = []
        for name in names:
            prefix, tap = name.split("_tap_")
            weights = decoder.get_layer(f"decoder_{prefix}_{tap}_conv").get_weights()[0].reshape(-1)
            tap_map = np.maximum(features[name][b] @ weights, 0)
            maps.append(bilinear_resize(tap_map, fused_size))
        fused = np.stack(maps, axis=-1) @ fuse
        output[b] = bilinear_resize(fused, input_size)
    return output


def test_forward_matches_numpy_reference(rng):
    decoder = build_decoder(TINY_SHAPES, (32, 48))
    for layer in decoder.layers:
        if layer.weights:
            layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()])
    decoder.get_layer("decoder_fuse_conv").set_weights([rng.uniform(0.1, 1, size=(1, 1, 6, 1)).astype(np.float32)])
    features = {name: rng.gamma(1.0, size=(2,) + shape).astype(np.float32) for name, shape in TINY_SHAPES.items()}
    output = decoder(features).numpy()
    assert output.shape == (2, 32, 48, 1) and output.dtype == np.float32
    np.testing.assert_allclose(output[..., 0], _numpy_decoder(features, decoder, (32, 48)), rtol=1e-4, atol=1e-5)


def test_output_is_non_negative_even_after_a_step_towards_negative_weights(rng):
    decoder = build_decoder(TINY_SHAPES, (32, 48))
    decoder.compile(optimizer=keras.optimizers.SGD(100.0), loss="mse")
    features = {name: rng.gamma(1.0, size=(2,) + shape).astype(np.float32) for name, shape in TINY_SHAPES.items()}
    decoder.train_on_batch(features, np.full((2, 32, 48, 1), -10.0, np.float32))
    assert (decoder.get_layer("decoder_fuse_conv").get_weights()[0] >= 0).all()
    assert (decoder(features).numpy() >= 0).all()


def test_layers_are_named_from_the_prefix():
    decoder = build_decoder(TINY_SHAPES, (32, 48), name="fusion")
    assert decoder.name == "fusion"
    layer_names = [layer.name for layer in decoder.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert all(name.startswith("fusion_") for name in layer_names)
    assert "fusion_tiny_b_s4_conv" in layer_names and "fusion_fuse_conv" in layer_names


def test_decoder_over_three_encoders():
    encoders = [tiny_encoder(prefix, (32, 48), seed=seed) for seed, prefix in enumerate(("ta", "tb", "tc"))]
    extractor = build_feature_extractor(encoders)
    assert len(tap_shapes(extractor)) == 9
    decoder = build_decoder(tap_shapes(extractor), (32, 48))
    assert decoder.count_params() == 3 * (8 + 12 + 16) + 9
    images = np.random.default_rng(3).uniform(0, 255, size=(2, 32, 48, 3)).astype(np.float32)
    features = extractor(images, training=False)
    np.testing.assert_allclose(
        decoder(features).numpy()[..., 0],
        _numpy_decoder({k: v.numpy() for k, v in features.items()}, decoder, (32, 48)),
        rtol=1e-4,
        atol=1e-5,
    )


def test_config_and_keras_round_trip(rng, tmp_path):
    decoder = build_decoder(TINY_SHAPES, (32, 48), name="dec", seed=3)
    decoder.set_weights([rng.uniform(0, 1, size=w.shape).astype(np.float32) for w in decoder.get_weights()])
    features = {name: rng.gamma(1.0, size=(1,) + shape).astype(np.float32) for name, shape in TINY_SHAPES.items()}
    expected = decoder(features).numpy()

    rebuilt = keras.Model.from_config(decoder.get_config())
    rebuilt.set_weights(decoder.get_weights())
    np.testing.assert_allclose(rebuilt(features).numpy(), expected, rtol=1e-6)

    path = tmp_path / "decoder.keras"
    decoder.save(path)
    loaded = keras.saving.load_model(path)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in decoder.layers]
    np.testing.assert_allclose(loaded(features).numpy(), expected, rtol=1e-6)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="at least one tap"):
        build_decoder({}, (32, 48))
    with pytest.raises(ValueError, match="tiny_a_tap_s2"):
        build_decoder({"tiny_a_tap_s2": (None, 24, 8)}, (32, 48))
    with pytest.raises(ValueError, match="input_size"):
        build_decoder(TINY_SHAPES, (0, 48))
