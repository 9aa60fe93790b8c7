import keras
import numpy as np
import pytest

from keras_emlnet.models.extractor import build_feature_extractor, encoder_prefix, tap_shapes
from keras_emlnet.testing import tiny_encoder

INPUT_SHAPE = (32, 48, 3)


@pytest.fixture(scope="module")
def encoders():
    encoders = [tiny_encoder("tiny_a", INPUT_SHAPE[:2], seed=0), tiny_encoder("tiny_b", INPUT_SHAPE[:2], seed=1)]
    # non-trivial BatchNorm statistics, so inference vs training mode differ
    for seed, encoder in enumerate(encoders):
        bn = encoder.get_layer(f"{encoder_prefix(encoder)}_conv2_bn")
        stats_rng = np.random.default_rng(seed)
        bn.moving_mean.assign(stats_rng.normal(size=bn.moving_mean.shape))
        bn.moving_variance.assign(stats_rng.uniform(0.5, 2.0, size=bn.moving_variance.shape))
    return encoders


@pytest.fixture(scope="module")
def extractor(encoders):
    return build_feature_extractor(encoders)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(7).uniform(0, 255, size=(2,) + INPUT_SHAPE).astype(np.float32)


def test_tap_names_and_shapes(extractor):
    # tiny backbone: taps at strides 2, 4, 8 with 8, 12, 16 channels
    expected = {}
    for prefix in ("tiny_a", "tiny_b"):
        expected[f"{prefix}_tap_s2"] = (16, 24, 8)
        expected[f"{prefix}_tap_s4"] = (8, 12, 12)
        expected[f"{prefix}_tap_final"] = (4, 6, 16)
    assert tap_shapes(extractor) == expected
    assert list(tap_shapes(extractor)) == list(expected)  # encoder order, then graph order
    nested = [layer.name for layer in extractor.layers if isinstance(layer, keras.Model)]
    assert nested == ["tiny_a_features", "tiny_b_features"]


def test_outputs_equal_each_encoders_own_tap_layers(encoders, extractor, images):
    features = extractor(images, training=False)
    for encoder in encoders:
        for name in (f"{encoder_prefix(encoder)}_tap_{tap}" for tap in ("s2", "s4", "final")):
            reference = keras.Model(encoder.input, encoder.get_layer(name).output)(images, training=False)
            np.testing.assert_allclose(features[name].numpy(), reference.numpy(), rtol=1e-6, atol=1e-6)


def test_frozen_no_trainable_weights_and_inference_batchnorm(extractor, images):
    assert extractor.trainable_weights == []
    assert extractor.count_params() > 0
    before = [weight.numpy().copy() for weight in extractor.weights]
    in_training = extractor(images, training=True)
    in_inference = extractor(images, training=False)
    for name in in_inference:
        # BatchNorm in training mode would use the batch statistics instead
        np.testing.assert_allclose(in_training[name].numpy(), in_inference[name].numpy(), rtol=1e-6, atol=1e-6)
    for weight, old in zip(extractor.weights, before):
        np.testing.assert_array_equal(weight.numpy(), old)  # moving statistics not updated


def test_no_gradient_flows_through_the_extractor(extractor, images):
    import tensorflow as tf

    image_tensor = tf.constant(images)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(image_tensor)
        features = extractor(image_tensor, training=True)
        total = tf.add_n([tf.reduce_sum(value) for value in features.values()])
    assert all(gradient is None for gradient in tape.gradient(total, extractor.weights))
    assert tape.gradient(total, image_tensor) is None


def test_keras_round_trip(extractor, images, tmp_path):
    path = tmp_path / "extractor.keras"
    extractor.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.trainable_weights == []
    expected, actual = extractor(images, training=False), loaded(images, training=False)
    assert list(actual) == list(expected)
    for name in expected:
        np.testing.assert_allclose(actual[name].numpy(), expected[name].numpy(), rtol=1e-6, atol=1e-6)


def test_same_prefix_twice_is_a_clear_error(encoders):
    twin = tiny_encoder("tiny_a", INPUT_SHAPE[:2], seed=5)
    with pytest.raises(ValueError, match="both have the prefix 'tiny_a'"):
        build_feature_extractor([encoders[0], twin])


def test_input_shapes_must_match_and_be_static(encoders):
    other = tiny_encoder("tiny_c", (64, 96), seed=2)
    with pytest.raises(ValueError, match="share one input shape"):
        build_feature_extractor([encoders[0], other])
    dynamic = tiny_encoder("tiny_d", (None, None), seed=3)
    with pytest.raises(ValueError, match="static"):
        build_feature_extractor([dynamic])
    with pytest.raises(ValueError, match="at least one encoder"):
        build_feature_extractor([])


def test_model_without_taps_is_rejected():
    inputs = keras.Input(INPUT_SHAPE)
    plain = keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs), name="plain_model")
    with pytest.raises(ValueError, match="plain_model"):
        build_feature_extractor([plain])


def test_dtype_policy_copies_the_tap_graphs_with_the_same_weights(encoders, extractor, images):
    mixed = build_feature_extractor(encoders, dtype_policy="mixed_bfloat16")
    conv = mixed.get_layer("tiny_a_features").get_layer("tiny_a_conv1")
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    assert encoders[0].get_layer("tiny_a_conv1").compute_dtype == "float32"  # the encoder is untouched
    expected, actual = extractor(images, training=False), mixed(images, training=False)
    for name in expected:
        reference = expected[name].numpy()
        scale = np.abs(reference).max()
        np.testing.assert_allclose(np.asarray(actual[name], np.float32), reference, atol=0.05 * scale)
