"""`.keras` files of encoders and EMLNets load in a FRESH process.

Registration happens on import, so these tests save in this process and load
in a subprocess that imports nothing but what the user would.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_emlnet.models import saving

_LOAD_AND_PREDICT = textwrap.dedent(
    """
    import sys
    import numpy as np
    {imports}
    model = {load}(sys.argv[1])
    images = np.load(sys.argv[2])
    np.save(sys.argv[3], np.asarray(model(images)))
    """
)


def _predict_in_fresh_process(tmp_path, model_path, images, imports, load):
    np.save(tmp_path / "images.npy", images)
    script = _LOAD_AND_PREDICT.format(imports=imports, load=load)
    result = subprocess.run(
        [sys.executable, "-c", script, str(model_path), str(tmp_path / "images.npy"), str(tmp_path / "out.npy")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(tmp_path / "out.npy")


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    from keras_emlnet import losses, testing
    from keras_emlnet.metrics import keras as keras_metrics
    from keras_emlnet.training import optimizers

    folder = tmp_path_factory.mktemp("saved")
    emlnet = testing.tiny_emlnet(input_size=(32, 48), output_mode="probability", seed=3)
    emlnet.save(folder / "emlnet.keras")
    encoder = testing.tiny_encoder("tiny_a", input_size=(32, 48), seed=4)
    encoder.compile(
        optimizer=optimizers.TorchSGD(learning_rate=0.01, momentum=0.9, weight_decay=1e-4),
        loss=losses.EMLLoss(),
        metrics=[keras_metrics.NSS(), keras_metrics.CC(), keras_metrics.KLD(), keras_metrics.SIM()],
    )
    encoder.save(folder / "encoder.keras")
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 48, 3)).astype("float32")
    expected = {"emlnet": np.asarray(emlnet(images)), "encoder": np.asarray(encoder(images))}
    return folder, images, expected


@pytest.mark.parametrize("name", ["emlnet", "encoder"])
def test_load_model_works_after_a_bare_import(tmp_path, saved_models, name):
    folder, images, expected = saved_models
    got = _predict_in_fresh_process(
        tmp_path, folder / f"{name}.keras", images, "import keras_emlnet", "keras_emlnet.load_model"
    )
    np.testing.assert_allclose(got, expected[name], rtol=1e-5, atol=1e-7)


def test_importing_the_emlnet_module_is_enough_for_keras_load_model(tmp_path, saved_models):
    folder, images, expected = saved_models
    got = _predict_in_fresh_process(
        tmp_path, folder / "emlnet.keras", images, "import keras, keras_emlnet.models.emlnet", "keras.saving.load_model"
    )
    np.testing.assert_allclose(got, expected["emlnet"], rtol=1e-5, atol=1e-7)


def test_encoder_metadata_is_read_in_a_fresh_process(tmp_path, saved_models):
    folder, _, _ = saved_models
    script = (
        "import json, sys, keras_emlnet\n"
        "encoder = keras_emlnet.load_model(sys.argv[1])\n"
        "print(json.dumps([type(encoder).__name__, encoder.backbone, encoder.tap_prefix, encoder.input_size]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder / "encoder.keras")], capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["SaliencyEncoder", "tiny_a", "tiny_a", [32, 48]]


def test_compiled_encoder_restores_its_loss_metrics_and_optimizer(saved_models):
    folder, _, _ = saved_models
    model = saving.load_model(folder / "encoder.keras", compile=True)
    assert type(model.loss).__name__ == "EMLLoss"
    assert type(model.optimizer).__name__ == "TorchSGD"


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.keras"):
        saving.load_model(tmp_path / "nope.keras")


def test_unloadable_file_is_named(tmp_path):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.keras"):
        saving.load_model(broken)
