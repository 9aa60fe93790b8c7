"""keras_emlnet.predictor: the same maps from a .keras file and its SavedModel export; metadata; errors."""

import numpy as np
import pytest

from keras_emlnet.predictor import load_predictor, predictor_from_keras_model


@pytest.fixture(scope="module")
def model():
    from keras_emlnet.testing import tiny_emlnet

    return tiny_emlnet((32, 48, 3), output_mode="log_density", resize_mode="pad_to_4_3", seed=2)


def test_keras_file_gives_the_models_maps_and_metadata(model, tmp_path):
    path = str(tmp_path / "emlnet.keras")
    model.save(path)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 48, 3)).astype(np.float32)
    predictor = load_predictor(path)
    assert predictor.kind == "keras"
    assert (predictor.model_size, predictor.resize_mode, predictor.output_mode) == (
        (32, 48), "pad_to_4_3", "log_density")
    np.testing.assert_allclose(predictor.predict(images).numpy(), model.predict(images, verbose=0),
                               rtol=1e-5, atol=1e-5)
    assert predictor.config()["model_kind"] == "keras"
    # (the SavedModel path is checked end to end in test_serving_batch_score)


def test_to_original_undoes_the_geometry_and_renormalises(model):
    from keras_emlnet.postprocess import tf_to_original_size

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
    encoder = tiny_encoder(input_shape=(24, 40, 3))
    encoder.save(path)
    predictor = load_predictor(path, precision="bfloat16")
    assert (predictor.model_size, predictor.resize_mode, predictor.output_mode) == ((24, 40), "resize", "raw")
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
