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
        references, *rest = real_references(model, images)
        return ([m + 0.01 * m.max() for m in references], *rest)

    monkeypatch.setattr(export_checks, "_references", references_off_by_one_percent)
    images = export_checks.representative_images((32, 48))
    with pytest.raises(export_checks.ExportParityError, match="differs from the Keras model"):
        export_checks.check_parity(cli_export.version_dir, cli_export.model, images, tolerance=1e-3)
    # The batched references are predict_map's maps, image by image.
    references, *_ = real_references(cli_export.model, images)
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
    real = saliency_module._model_frame_maps

    def counting(model, images):
        traces.append(images.shape)  # Python runs only while TensorFlow traces
        return real(model, images)

    monkeypatch.setattr(saliency_module, "_model_frame_maps", counting)
    config = ExportConfig(model="<in memory>", export_base=str(tmp_path), version=1, precision="float32")
    with caplog.at_level("INFO", logger="tensorflow"):
        version_dir, record = export_saliency_model(cli_export.model, config)
    assert [tuple(shape) for shape in traces] == [(None, *cli_export.model.input_size, 3)]
    assert record["parity"]["max_relative_diff"] <= config.parity_tolerance
    assert not [r for r in caplog.records if "unsupported characters" in r.getMessage()]
    assert record["signatures"]["serving_default"]["inputs"] == {"image_bytes": {"dtype": "DT_STRING", "shape": [-1]}}


def _saved_variable_names(version_dir):
    import tensorflow as tf

    return sorted(name for name, _ in tf.train.list_variables(os.path.join(version_dir, "variables", "variables")))


@pytest.fixture
def measured_auto(monkeypatch):
    """`auto` measuring as on a Zen 4 CPU, with timings scripted: bfloat16 wins from batch 2 on."""
    from keras_emlnet.inference import precision
    from serving.export import export as export_lib

    monkeypatch.delenv(precision.AUTO_ENV, raising=False)
    monkeypatch.setenv(precision.CACHE_ENV, "")
    monkeypatch.setattr(precision, "needs_measurement", lambda: True)
    timed = []
    real_timer = export_lib._timer

    def scripted_timer(model_maps, input_size):
        timer = real_timer(model_maps, input_size, rounds=1)

        def measure(name, batch_size):
            seconds = timer(name, batch_size)  # the real traces really run
            assert 0 < seconds < 60
            timed.append((name, batch_size))
            return {"float32": 1.0, "bfloat16": 0.5 if batch_size >= 2 else 2.0}[name]
        return measure

    monkeypatch.setattr(export_lib, "_timer", scripted_timer)
    return timed


def test_auto_runs_batches_from_the_measured_crossover_in_bfloat16(measured_auto, tmp_path):
    import tensorflow as tf

    from serving.export.export import ExportConfig, export_saliency_model

    model = helpers.tiny_model()
    config = ExportConfig(model="<in memory>", export_base=str(tmp_path / "auto"), version=1, max_batch_size=4)
    version_dir, record = export_saliency_model(model, config)
    assert {batch for _, batch in measured_auto} == {1, 2, 4}
    assert record["precision"] == "float32 below batch 2, bfloat16 from 2"
    assert (record["bfloat16_from_batch"], record["max_batch_size"]) == (2, 4)
    assert record["warmup_requests"] == 1 + 3 + 1  # plus one batch of 2 that warms the bfloat16 trace
    by_batch = record["parity"]["max_relative_diff_by_batch"]
    assert set(by_batch) == {"1", "2", "3"}  # both sides of the crossover were checked
    assert by_batch["1"] <= config.parity_tolerance < by_batch["2"] <= record["parity"]["reduced_tolerance"]

    loaded = tf.saved_model.load(version_dir)
    assert loaded.precision.numpy().decode() == record["precision"]
    image = np.random.default_rng(3).uniform(0, 255, (1, *model.input_size, 3)).astype(np.float32)
    want = np.asarray(model(image, training=False))
    one = loaded.predict_model_size(tf.constant(image)).numpy()
    two = loaded.predict_model_size(tf.constant(np.repeat(image, 2, axis=0))).numpy()
    np.testing.assert_allclose(one, want, rtol=1e-5, atol=1e-6)  # batch 1: float32
    assert np.max(np.abs(two[0] - want[0])) > 1e-4  # batch 2: bfloat16 really ran
    assert np.corrcoef(two[0].ravel(), want[0].ravel())[0, 1] > 0.99
    np.testing.assert_array_equal(two[0], two[1])
    # Both traces read the same variables: no second copy of the weights is saved.
    float32_dir, float32_record = export_saliency_model(model, ExportConfig(
        model="<in memory>", export_base=str(tmp_path / "float32"), version=1, precision="float32"))
    assert float32_record["bfloat16_from_batch"] is None and float32_record["warmup_requests"] == 4
    assert _saved_variable_names(version_dir) == _saved_variable_names(float32_dir)
    # The Keras model it was given still computes in float32.
    assert {layer.dtype_policy.name for layer in model._flatten_layers(include_self=True, recursive=True)} == \
        {"float32"}
    np.testing.assert_array_equal(np.asarray(model(image, training=False)), want)


def test_bfloat16_exports_are_checked_against_the_float32_model(tmp_path):
    import tensorflow as tf

    from serving.export.export import REDUCED_PARITY_TOLERANCE, ExportConfig, export_saliency_model

    model = helpers.tiny_model()
    config = ExportConfig(model="<in memory>", export_base=str(tmp_path), version=1, precision="bfloat16")
    version_dir, record = export_saliency_model(model, config)
    assert (record["precision"], record["bfloat16_from_batch"], record["precision_reason"]) == \
        ("bfloat16", 1, "requested")
    assert 1e-4 < record["parity"]["max_relative_diff"] <= REDUCED_PARITY_TOLERANCE
    image = np.random.default_rng(4).uniform(0, 255, (1, *model.input_size, 3)).astype(np.float32)
    loaded = tf.saved_model.load(version_dir)  # held: its functions need its variables alive
    got = loaded.predict_model_size(tf.constant(image)).numpy()
    want = np.asarray(model(image, training=False))
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.99 and not np.allclose(got, want, atol=1e-4)
    assert model.get_layer("tiny_emlnet_decoder").compute_dtype == "float32"


def test_by_batch_maps_switch_at_the_crossover():
    import tensorflow as tf

    from serving.export import saliency_module

    spec_size = (2, 3)
    small = tf.function(lambda images: images[..., :1] * 0.0 + 1.0,
                        input_signature=[saliency_module.model_size_spec(spec_size)]).get_concrete_function()
    large = tf.function(lambda images: images[..., :1] * 0.0 + 2.0,
                        input_signature=[saliency_module.model_size_spec(spec_size)]).get_concrete_function()
    maps = saliency_module.maps_by_batch_size(small, large, 3, spec_size)
    for batch_size, value in [(1, 1.0), (2, 1.0), (3, 2.0), (5, 2.0)]:
        got = maps(tf.zeros((batch_size, *spec_size, 3))).numpy()
        assert got.shape == (batch_size, *spec_size, 1) and np.all(got == value), batch_size
