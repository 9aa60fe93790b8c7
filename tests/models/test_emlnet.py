import keras
import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from keras_emlnet import EMLNet
from keras_emlnet.models import geometry
from keras_emlnet.models.postprocess import DENSITY_FLOOR
from keras_emlnet.testing import tiny_emlnet

INPUT_SHAPE = (32, 48, 3)


def _numpy_mode(raw, output_mode):
    """The documented output-mode formulas for one (h, w) map, in NumPy."""
    raw = np.asarray(raw, np.float64)
    if output_mode == "minmax":
        return (raw - raw.min()) / (raw.max() - raw.min())
    density = np.maximum(raw, 0) / np.maximum(raw, 0).sum()
    density = (1 - DENSITY_FLOOR) * density + DENSITY_FLOOR / raw.size
    return density if output_mode == "probability" else np.log(density)


@pytest.fixture(scope="module")
def model():
    model = tiny_emlnet(INPUT_SHAPE[:2], output_mode="probability")
    weights_rng = np.random.default_rng(11)
    # trained-looking state: random positive decoder weights, non-trivial BN statistics
    model.decoder.set_weights([weights_rng.uniform(0.05, 1.0, size=w.shape) for w in model.decoder.get_weights()])
    for prefix in ("tiny_a", "tiny_b"):
        bn = model.extractor.get_layer(f"{prefix}_features").get_layer(f"{prefix}_conv2_bn")
        bn.moving_mean.assign(weights_rng.normal(size=bn.moving_mean.shape))
        bn.moving_variance.assign(weights_rng.uniform(0.5, 2.0, size=bn.moving_variance.shape))
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(5).uniform(0, 255, size=(2,) + INPUT_SHAPE).astype(np.float32)


def _variant(model, **kwargs):
    """An EMLNet over the same extractor and decoder with other post-processing."""
    return EMLNet(model.extractor, model.decoder, **kwargs)


def test_attributes_and_output_shape(model, images):
    assert model.input_size == (32, 48)
    assert (model.resize_mode, model.output_mode, model.blur_sigma) == ("resize", "probability", None)
    output = model(images)
    assert output.shape == (2, 32, 48, 1) and output.dtype == tf.float32
    assert len(model.trainable_weights) == 7  # 6 tap convs + the fusing conv
    assert model.count_params() - sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == 78


@pytest.mark.parametrize("output_mode", ["minmax", "probability", "log_density"])
def test_output_modes_normalise_the_raw_decoder_map(model, images, output_mode):
    raw = model.training_model()(images).numpy()[..., 0]
    assert (raw >= 0).all()
    output = _variant(model, output_mode=output_mode)(images).numpy()[..., 0]
    for index in range(2):
        np.testing.assert_allclose(output[index], _numpy_mode(raw[index], output_mode), rtol=2e-5, atol=1e-6)
    if output_mode == "minmax":
        assert output.min() == pytest.approx(0.0, abs=1e-6) and output.max() == pytest.approx(1.0)
    else:
        density = output if output_mode == "probability" else np.exp(output)
        np.testing.assert_allclose(density.sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_blur_is_applied_to_the_raw_map_before_normalising(model, images):
    raw = model.training_model()(images).numpy()[..., 0]
    blurred = _variant(model, output_mode="minmax", blur_sigma=1.5)(images).numpy()[..., 0]
    for index in range(2):
        reference = scipy.ndimage.gaussian_filter(raw[index], 1.5, mode="nearest", truncate=4.0)
        np.testing.assert_allclose(blurred[index], _numpy_mode(reference, "minmax"), rtol=1e-4, atol=1e-5)


def test_decoder_step_trains_only_the_decoder(images):
    from keras_emlnet.losses import EMLLoss

    model = tiny_emlnet(INPUT_SHAPE[:2])
    trainer = model.training_model()
    density = np.random.default_rng(2).uniform(size=(2, 32, 48, 1)).astype(np.float32)
    density /= density.sum(axis=(1, 2), keepdims=True)
    fixations = (np.random.default_rng(3).uniform(size=(2, 32, 48, 1)) > 0.97).astype(np.float32)
    y_true = np.concatenate([density, fixations], axis=-1)

    decoder_ids = {id(w) for w in model.decoder.trainable_weights}
    with tf.GradientTape() as tape:
        loss = EMLLoss()(y_true, trainer(images, training=True))
    gradients = tape.gradient(loss, model.weights)
    has_gradient = {id(w) for w, g in zip(model.weights, gradients) if g is not None}
    assert has_gradient == decoder_ids

    extractor_before = [w.numpy().copy() for w in model.extractor.weights]
    decoder_before = [w.numpy().copy() for w in model.decoder.weights]
    trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=EMLLoss())
    trainer.train_on_batch(images, y_true)
    for weight, before in zip(model.extractor.weights, extractor_before):
        np.testing.assert_array_equal(weight.numpy(), before, err_msg=weight.path)  # incl. BN statistics
    assert any(not np.array_equal(w.numpy(), b) for w, b in zip(model.decoder.weights, decoder_before))


def test_keras_round_trip(model, images, tmp_path):
    variant = _variant(model, resize_mode="pad_to_4_3", output_mode="log_density", blur_sigma=2.0, name="saved")
    path = tmp_path / "emlnet.keras"
    variant.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, EMLNet)
    assert (loaded.input_size, loaded.resize_mode, loaded.output_mode, loaded.blur_sigma) == (
        (32, 48),
        "pad_to_4_3",
        "log_density",
        2.0,
    )
    np.testing.assert_allclose(loaded(images).numpy(), variant(images).numpy(), rtol=1e-6, atol=1e-6)
    image = np.random.default_rng(9).integers(0, 256, size=(45, 31, 3), dtype=np.uint8)
    np.testing.assert_allclose(loaded.predict_map(image), variant.predict_map(image), rtol=1e-6, atol=1e-6)
    assert loaded.trainable_weights and len(loaded.trainable_weights) == len(variant.trainable_weights)


@pytest.mark.parametrize("size", [(333, 517), (1080, 1920), (17, 23)])
@pytest.mark.parametrize("resize_mode", ["resize", "pad_to_4_3"])
def test_predict_map_returns_the_original_size(model, size, resize_mode):
    image = np.random.default_rng(size[0]).integers(0, 256, size=size + (3,), dtype=np.uint8)
    variant = _variant(model, resize_mode=resize_mode, output_mode="probability")
    saliency = variant.predict_map(image)
    assert saliency.shape == size and saliency.dtype == np.float32
    assert saliency.sum() == pytest.approx(1.0, rel=1e-5)
    # float input in [0, 255] gives the same map as uint8
    np.testing.assert_allclose(variant.predict_map(image.astype(np.float32)), saliency, rtol=1e-6, atol=1e-12)


def test_predict_map_matches_numpy_geometry_reference(model):
    image = np.random.default_rng(4).integers(0, 256, size=(70, 40, 3), dtype=np.uint8)
    variant = _variant(model, resize_mode="pad_to_4_3", output_mode="minmax")
    frame = geometry.make_geometry(image.shape[:2], (32, 48), "pad_to_4_3")
    model_map = variant(frame.image_to_model(image)[None]).numpy()[0]
    expected = _numpy_mode(frame.map_to_original(model_map)[..., 0], "minmax")
    np.testing.assert_allclose(variant.predict_map(image), expected, rtol=1e-4, atol=1e-4)


def test_bad_arguments_are_clear_errors(model):
    with pytest.raises(ValueError, match=r"\(h, w, 3\)"):
        model.predict_map(np.zeros((20, 30), np.uint8))
    with pytest.raises(ValueError, match="output_mode"):
        _variant(model, output_mode="softmax")
    with pytest.raises(ValueError, match="resize_mode"):
        _variant(model, resize_mode="crop")
    with pytest.raises(ValueError, match="sigma"):
        _variant(model, blur_sigma=-1)
    from keras_emlnet.models.decoder import build_decoder
    from keras_emlnet.models.extractor import tap_shapes

    wrong_size = build_decoder(tap_shapes(model.extractor), (16, 24))
    with pytest.raises(ValueError, match="input_size"):
        EMLNet(model.extractor, wrong_size)


def test_float32_output_under_mixed_precision(images):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = tiny_emlnet(INPUT_SHAPE[:2], output_mode="probability")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.decoder.get_layer("tiny_emlnet_decoder_fuse_conv").compute_dtype == "bfloat16"
    output = model(images)
    assert output.dtype == tf.float32
    np.testing.assert_allclose(output.numpy().sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
