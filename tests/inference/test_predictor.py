"""keras_emlnet.inference.predictor: the same maps from a .keras file and its SavedModel export; metadata; errors."""

import numpy as np
import pytest

from keras_emlnet.inference.predictor import load_predictor, predictor_from_keras_model


@pytest.fixture(scope="module")
def model():
    from keras_emlnet.testing import tiny_emlnet

    return tiny_emlnet((32, 48), output_mode="log_density", resize_mode="pad_to_4_3", seed=2)


def test_keras_file_gives_the_models_maps_and_metadata(model, tmp_path):
    path = str(tmp_path / "emlnet.keras")
    model.save(path)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 48, 3)).astype(np.float32)
    predictor = load_predictor(path)
    assert predictor.kind == "keras"
    assert (predictor.input_size, predictor.resize_mode, predictor.output_mode) == (
        (32, 48), "pad_to_4_3", "log_density")
    np.testing.assert_allclose(predictor.predict(images).numpy(), model.predict(images, verbose=0),
                               rtol=1e-5, atol=1e-5)
    assert predictor.config()["model_kind"] == "keras"
    # (the SavedModel path is also checked end to end in test_serving_batch_score)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """(version folder, legacy folder): `model` exported, and the same export without predict_model_size."""
    import tensorflow as tf

    from serving.export import saliency_module
    from serving.export.export import ExportConfig, export_saliency_model

    base = tmp_path_factory.mktemp("exports")
    version_dir, _ = export_saliency_model(model, ExportConfig(model="<in memory>", export_base=str(base / "emlnet")))
    # An export made before predict_model_size existed: the same signatures and attributes only.
    module = saliency_module.SaliencyModule(model, (32, 48), "pad_to_4_3", "log_density")
    legacy = tf.Module()
    legacy.model = module.model
    legacy.input_size, legacy.resize_mode, legacy.output_mode = (
        module.input_size, module.resize_mode, module.output_mode)
    legacy_dir = str(base / "legacy")
    tf.saved_model.save(legacy, legacy_dir, signatures=module.signatures())
    return version_dir, legacy_dir


def float_images(count):
    # Off the integer grid, as images resized to the model size are.
    return np.random.default_rng(3).uniform(0, 255, (count, 32, 48, 3)).astype(np.float32)


def test_saved_model_gives_the_keras_models_maps_from_float_images(model, exported):
    predictor = load_predictor(exported[0])
    assert predictor.kind == "saved_model"
    assert (predictor.input_size, predictor.resize_mode, predictor.output_mode) == (
        (32, 48), "pad_to_4_3", "log_density")
    images = float_images(3)
    maps = predictor.predict(images).numpy()
    assert maps.shape == (3, 32, 48, 1) and maps.dtype == np.float32
    # log densities: float agreement, far below what rounding the input to uint8 changes
    np.testing.assert_allclose(maps, model.predict(images, verbose=0), rtol=1e-5, atol=1e-5)


def test_older_saved_model_falls_back_to_the_uint8_signature(model, exported):
    import tensorflow as tf

    assert not hasattr(tf.saved_model.load(exported[1]), "predict_model_size")
    predictor = load_predictor(exported[1])
    assert (predictor.input_size, predictor.resize_mode, predictor.output_mode) == (
        (32, 48), "pad_to_4_3", "log_density")
    images = float_images(2)
    maps = predictor.predict(images).numpy()
    assert maps.shape == (2, 32, 48, 1)
    # It sees the images rounded to whole levels: equal to the model on the rounded images.
    np.testing.assert_allclose(maps, model.predict(np.round(images), verbose=0), rtol=1e-5, atol=1e-5)


def test_to_original_undoes_the_geometry_and_renormalises(model):
    from keras_emlnet.models.postprocess import tf_to_original_size

    predictor = predictor_from_keras_model(model)
    model_map = model.predict(np.full((1, 32, 48, 3), 90.0, np.float32), verbose=0)[0]
    for size in [(50, 30), (17, 23), (32, 48)]:
        restored = predictor.to_original(model_map, size).numpy()
        expected = tf_to_original_size(model_map, size, "pad_to_4_3", "log_density").numpy()
        np.testing.assert_allclose(restored, expected, rtol=1e-6)
        assert restored.shape == size + (1,)
        assert np.exp(restored).sum() == pytest.approx(1.0, rel=1e-4)


def test_a_plain_saliency_model_is_used_raw_at_its_input_size(tmp_path):
    from keras_emlnet.testing import tiny_encoder

    path = str(tmp_path / "encoder.keras")
    encoder = tiny_encoder(input_size=(24, 40))
    encoder.save(path)
    predictor = load_predictor(path, precision="bfloat16")
    assert (predictor.input_size, predictor.resize_mode, predictor.output_mode) == ((24, 40), "resize", "raw")
    images = np.random.default_rng(1).integers(0, 256, (2, 24, 40, 3)).astype(np.float32)
    maps = predictor.predict(images).numpy()
    assert maps.dtype == np.float32 and maps.shape == (2, 24, 40, 1)
    reference = encoder.predict(images, verbose=0)
    assert np.corrcoef(maps.ravel(), reference.ravel())[0, 1] > 0.99


def test_bad_paths_and_precisions_raise(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ValueError, match="fixed at export"):
        load_predictor(str(tmp_path), precision="bfloat16")
    with pytest.raises(ValueError, match="precision"):
        load_predictor(str(tmp_path / "emlnet.keras"), precision="int8")
    (tmp_path / "saved_model.pb").unlink()
    with pytest.raises(FileNotFoundError, match="neither"):
        load_predictor(str(tmp_path))
