"""serving.export: the SavedModel layout TF Serving loads, signatures, parity, atomicity."""

import json
import os
import re
import types

import numpy as np
import pytest

from tests.serving import helpers


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory):
    """A tiny EMLNet (probability, pad_to_4_3) saved as .keras and exported by the CLI."""
    base = tmp_path_factory.mktemp("export_cli")
    model = helpers.tiny_model(output_mode="probability", resize_mode="pad_to_4_3")
    model_path = str(base / "emlnet.keras")
    model.save(model_path)
    export_base = base / "exports" / "emlnet"
    result = helpers.run_module(
        ["serving.export", "--model", model_path, "--export_base", str(export_base), "--version", "3"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    from serving.export.export import load_keras_model

    return types.SimpleNamespace(
        model=load_keras_model(model_path), model_path=model_path,
        export_base=str(export_base), version_dir=str(export_base / "3"), log=result.stderr,
    )


@pytest.fixture(scope="module")
def loaded(cli_export):
    import tensorflow as tf

    return tf.saved_model.load(cli_export.version_dir)


def test_cli_writes_the_tf_serving_layout_and_config(cli_export):
    version_dir = cli_export.version_dir
    for name in ("saved_model.pb", "variables/variables.index",
                 "assets.extra/tf_serving_warmup_requests", "config.json"):
        assert os.path.isfile(os.path.join(version_dir, name)), name
    # Only the published version is left: no temporary folder.
    assert os.listdir(cli_export.export_base) == ["3"]
    with open(os.path.join(version_dir, "config.json")) as f:
        config = json.load(f)
    assert config["model"] == cli_export.model_path
    assert config["version"] == 3 and config["model_name"] == "emlnet"
    assert config["input_size"] == [32, 48]
    assert (config["resize_mode"], config["output_mode"]) == ("pad_to_4_3", "probability")
    assert config["padding_value"] == 0.0
    assert config["signatures"]["serving_default"]["inputs"] == {
        "image_bytes": {"dtype": "DT_STRING", "shape": [-1]}
    }
    assert config["signatures"]["predict_images"]["inputs"] == {
        "images": {"dtype": "DT_UINT8", "shape": [-1, -1, -1, 3]}
    }
    for signature in config["signatures"].values():
        assert set(signature["outputs"]) == {"saliency", "height", "width"}
    assert config["parity"]["max_relative_diff"] <= config["parity"]["tolerance"]


def test_cli_logs_each_stage_with_its_seconds(cli_export):
    # --verbose defaults to auto: every stage is logged as it starts and as it ends, in order.
    stages = ["loading", "saving the SavedModel", "writing the warmup requests",
              "reloading the SavedModel and checking it", "publishing version 3"]
    starts = [cli_export.log.find(f"] {name}") for name in stages]
    assert all(start >= 0 for start in starts), cli_export.log[-3000:]
    assert starts == sorted(starts)
    for name in stages:
        assert re.search(rf"\] {re.escape(name)}.*: \d+\.\d s \(total \d+\.\d s\)", cli_export.log), name


def test_loaded_object_exposes_model_attributes(loaded):
    assert loaded.input_size.numpy().tolist() == [32, 48]
    assert loaded.resize_mode.numpy() == b"pad_to_4_3"
    assert loaded.output_mode.numpy() == b"probability"
    assert set(loaded.signatures) == {"serving_default", "predict_images"}


def test_predict_model_size_maps_float_images_unrounded(cli_export, loaded):
    import tensorflow as tf

    # Not a signature (TF Serving clients see only the two above), but callable after load.
    images = np.random.default_rng(4).uniform(0, 255, (2, 32, 48, 3)).astype(np.float32)
    got = loaded.predict_model_size(tf.constant(images)).numpy()
    want = np.asarray(cli_export.model(images, training=False))
    assert got.shape == (2, 32, 48, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * want.max())
    rounded = np.asarray(cli_export.model(np.round(images), training=False))
    assert np.max(np.abs(rounded - want)) > 100 * np.max(np.abs(got - want))  # rounding would show
    with pytest.raises((TypeError, ValueError)):  # the model size only
        loaded.predict_model_size(tf.zeros((1, 40, 48, 3)))


def test_image_bytes_of_mixed_sizes_match_keras_at_original_size(cli_export, loaded):
    import tensorflow as tf

    images = helpers.distinct_images(3, seed=5)  # 32x48, 40x30, 25x61: not the export's check images
    encoded = tf.constant([helpers.png_bytes(image) for image in images])
    out = loaded.signatures["serving_default"](image_bytes=encoded)
    saliency = out["saliency"].numpy()
    assert saliency.shape == (3, 40, 61)  # padded to the largest height and width
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        assert (int(out["height"][i]), int(out["width"][i])) == (h, w)
        got = saliency[i, :h, :w]
        want = cli_export.model.predict_map(image)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * want.max())
        assert got.sum() == pytest.approx(1.0, abs=1e-4)  # probability at the original size
        assert not saliency[i, h:].any() and not saliency[i, :, w:].any()  # padding is 0


def test_predict_images_matches_keras(cli_export, loaded):
    import tensorflow as tf

    images = helpers.distinct_images(2, seed=9, sizes=((45, 20),))
    out = loaded.signatures["predict_images"](images=tf.constant(np.stack(images)))
    assert out["saliency"].shape == (2, 45, 20)
    assert out["height"].numpy().tolist() == [45, 45] and out["width"].numpy().tolist() == [20, 20]
    for i, image in enumerate(images):
        want = cli_export.model.predict_map(image)
        np.testing.assert_allclose(out["saliency"][i].numpy(), want, rtol=1e-5, atol=1e-5 * want.max())


def test_empty_batch_fails_in_the_saved_model_itself(loaded):
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match="empty batch"):
        loaded.signatures["serving_default"](image_bytes=tf.constant([], dtype=tf.string))


def test_warmup_file_holds_predict_requests_for_both_signatures(cli_export):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from serving.server.servable import Servable

    path = os.path.join(cli_export.version_dir, "assets.extra", "tf_serving_warmup_requests")
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    requests = [log.predict_log.request for log in logs]
    assert all(log.WhichOneof("log_type") == "predict_log" for log in logs)
    assert {r.model_spec.signature_name for r in requests} == {"serving_default", "predict_images"}
    assert all(r.model_spec.name == "emlnet" for r in requests)
    batch = tf.make_ndarray(requests[0].inputs["image_bytes"])
    assert len(batch) == 3 and batch[0][:4] == b"\x89PNG" and batch[1][:2] == b"\xff\xd8"  # PNG and JPEG
    # The local server replays them at load exactly as TF Serving does.
    assert Servable.load(cli_export.version_dir, 3).warmup() == len(logs)


def test_existing_version_is_never_overwritten(cli_export):
    from serving.export.export import ExportConfig, export_saliency_model

    pb = os.path.join(cli_export.version_dir, "saved_model.pb")
    before = os.stat(pb).st_mtime_ns
    config = ExportConfig(model="<in memory>", export_base=cli_export.export_base, version=3)
    with pytest.raises(FileExistsError, match="exists"):
        export_saliency_model(cli_export.model, config)
    assert os.stat(pb).st_mtime_ns == before


def test_parity_check_catches_a_mismatch(cli_export, monkeypatch):
    from serving.export import checks as export_checks

    real_references = export_checks._references

    def references_off_by_one_percent(model, images):
        # A Keras model whose maps disagree with the export by 1 % of their peak.
        references, batch, want = real_references(model, images)
        return [m + 0.01 * m.max() for m in references], batch, want

    monkeypatch.setattr(export_checks, "_references", references_off_by_one_percent)
    images = export_checks.representative_images((32, 48))
    with pytest.raises(export_checks.ExportParityError, match="differs from the Keras model"):
        export_checks.check_parity(cli_export.version_dir, cli_export.model, images, tolerance=1e-3)
    # The batched references are predict_map's maps, image by image.
    references, _, _ = real_references(cli_export.model, images)
    for image, reference in zip(images, references):
        np.testing.assert_allclose(reference, export_checks.reference_map(cli_export.model, image),
                                   rtol=1e-5, atol=1e-6)


def test_failed_check_publishes_nothing(cli_export, tmp_path, monkeypatch):
    import tensorflow as tf

    from serving.export import checks as export_checks
    from serving.export.export import ExportConfig, export_saliency_model

    written = []

    def fake_save(module, directory, signatures):  # the real save is tested above; skip its cost
        written.append(directory)
        with open(os.path.join(directory, "saved_model.pb"), "wb") as f:
            f.write(b"partial")

    def failing_check(*args, **kwargs):
        raise export_checks.ExportParityError("injected mismatch")

    monkeypatch.setattr(tf.saved_model, "save", fake_save)
    monkeypatch.setattr(export_checks, "check_parity", failing_check)
    config = ExportConfig(model="<in memory>", export_base=str(tmp_path), version=1)
    messages = []
    with pytest.raises(export_checks.ExportParityError, match="injected"):
        export_saliency_model(cli_export.model, config, log=messages.append)
    assert re.fullmatch(r"reloading the SavedModel .*: failed after \d+\.\d s", messages[-1])
    assert not any("publishing" in message for message in messages)
    assert os.path.basename(written[0]).startswith(".tmp-1-")  # it was written beside, not as "1"
    assert os.listdir(tmp_path) == []  # neither version 1 nor the temporary folder


def test_models_that_cannot_be_served_are_refused():
    from serving.export.export import model_attributes

    with pytest.raises(ValueError, match="input_size"):
        model_attributes(types.SimpleNamespace(name="plain", resize_mode="resize", output_mode="minmax"))
    raw = types.SimpleNamespace(input_size=(32, 48), resize_mode="resize", output_mode="raw")
    with pytest.raises(ValueError, match="cannot be served"):
        model_attributes(raw)


def test_next_version_follows_the_highest_integer_folder(tmp_path):
    from serving.export.export import next_version

    assert next_version(tmp_path / "missing") == 1
    for name in ("1", "7", ".tmp-9-abc", "notes"):
        (tmp_path / name).mkdir()
    assert next_version(tmp_path) == 8


def test_only_keras_files_are_loaded(tmp_path):
    from serving.export.export import load_keras_model

    bogus = tmp_path / "model.h5"
    bogus.write_bytes(b"not a model")
    with pytest.raises(FileNotFoundError, match="is not a .keras file"):
        load_keras_model(bogus)


def test_the_model_is_traced_once_and_its_captures_are_not_logged(cli_export, tmp_path, monkeypatch, caplog):
    # Tracing the model is most of an export's cost: the two signatures and the saved
    # predict_model_size must share one trace (the export traced it 3 times, then 2).
    from serving.export import saliency_module
    from serving.export.export import ExportConfig, export_saliency_model

    traces = []
    real = saliency_module.SaliencyModule._model_frame_maps

    def counting(self, images):
        traces.append(images.shape)  # Python runs only while TensorFlow traces
        return real(self, images)

    monkeypatch.setattr(saliency_module.SaliencyModule, "_model_frame_maps", counting)
    config = ExportConfig(model="<in memory>", export_base=str(tmp_path), version=1, precision="float32")
    with caplog.at_level("INFO", logger="tensorflow"):
        version_dir, record = export_saliency_model(cli_export.model, config)
    assert [tuple(shape) for shape in traces] == [(None, *cli_export.model.input_size, 3)]
    assert record["parity"]["max_relative_diff"] <= config.parity_tolerance
    assert not [r for r in caplog.records if "unsupported characters" in r.getMessage()]
    assert record["signatures"]["serving_default"]["inputs"] == {"image_bytes": {"dtype": "DT_STRING", "shape": [-1]}}
