"""keras_emlnet.training.fit on a tiny encoder: schedule, config.json, resume, outputs, precision, distribution."""

import csv
import dataclasses
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from keras_emlnet import testing
from keras_emlnet.losses import EMLLoss
from keras_emlnet.metrics.keras import NSS
from keras_emlnet.training import fit
from keras_emlnet.training.config import ConfigMismatchError, TrainConfig

SIZE = (32, 48)
STEPS_PER_EPOCH = 2  # 8 samples, batch 4


def saliency_data(num=8, seed=0):
    """(image, y_true) batches: random images, sparse fixations, blurred density."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (num, *SIZE, 3)).astype("float32")
    fixations = (rng.uniform(size=(num, *SIZE)) < 0.02).astype("float32")
    fixations[:, 5, 7] = 1.0  # at least one fixation per image
    density = np.stack([ndimage.gaussian_filter(f, 2.0) for f in fixations]) + 1e-6
    density /= density.sum(axis=(1, 2), keepdims=True)
    targets = np.stack([density, fixations], axis=-1).astype("float32")
    return tf.data.Dataset.from_tensor_slices((images, targets)).batch(4)


CONFIG = TrainConfig(epochs=3, batch_size=4, learning_rate=0.01, lr_decay_epochs=(2,), input_size=SIZE)
RUN_SETTINGS = {"stage": "test", "backbone": "tiny"}


def run_fit(workdir, config=CONFIG, callbacks=(), val=True):
    return fit.fit(
        lambda: testing.tiny_encoder(input_size=config.input_size),
        saliency_data(),
        saliency_data(4, seed=1) if val else None,
        config,
        workdir,
        loss=EMLLoss(),
        metrics=[NSS],
        run_settings=RUN_SETTINGS,
        final_model_name="encoder.keras",
        callbacks=callbacks,
    )


class CrashAtStep(keras.callbacks.Callback):
    """Raises mid-epoch, like a killed process (no on_train_end runs)."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            raise KeyboardInterrupt("simulated kill")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted 3-epoch run (the reference for resume tests)."""
    workdir = tmp_path_factory.mktemp("finished")
    return workdir, run_fit(workdir)


def history_rows(workdir):
    with open(os.path.join(workdir, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


def max_weight_difference(model_a, model_b):
    return max(np.abs(a - b).max() for a, b in zip(model_a.get_weights(), model_b.get_weights()))


# --- one finished run --------------------------------------------------------


def test_learning_rate_follows_the_step_schedule(finished):
    workdir, result = finished
    expected = [0.01, 0.01, 0.001]  # x0.1 from 0-based epoch 2
    np.testing.assert_allclose(result.history["learning_rate"], expected, rtol=1e-6)
    rows = history_rows(workdir)
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    np.testing.assert_allclose([float(row["learning_rate"]) for row in rows], expected, rtol=1e-6)


def test_config_json_records_the_settings_used(finished):
    workdir, _ = finished
    with open(workdir / "config.json") as f:
        recorded = json.load(f)
    assert TrainConfig.from_dict(recorded["train"]) == CONFIG
    assert recorded["run"] == RUN_SETTINGS
    assert recorded["final_model"] == "encoder.keras"
    runtime = recorded["runtime"]
    assert runtime["num_replicas"] == 1 and runtime["dtype_policy"] == "float32"
    assert runtime["resumed_from_epoch"] == 0 and runtime["resumed_from_step"] == 0
    assert runtime["tensorflow"] == tf.__version__ and runtime["keras"] == keras.__version__


def test_outputs_load_and_predict_like_the_trained_model(finished):
    workdir, result = finished
    images = next(iter(saliency_data(4, seed=2)))[0]
    expected = result.model.predict(images, verbose=0)
    assert expected.dtype == np.float32 and expected.shape == (4, *SIZE, 1)
    final = keras.saving.load_model(workdir / "encoder.keras")
    np.testing.assert_allclose(final.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    last = keras.saving.load_model(workdir / "checkpoints" / "last.keras")
    np.testing.assert_allclose(last.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert int(last.optimizer.iterations.numpy()) == 3 * STEPS_PER_EPOCH  # saved with optimizer state
    best = json.loads((workdir / "checkpoints" / "best.json").read_text())
    assert best["monitor"] == "val_loss"
    assert best["value"] == pytest.approx(min(result.history["val_loss"]), rel=1e-6)
    assert keras.saving.load_model(workdir / "checkpoints" / "best.keras").name == result.model.name


def test_tensorboard_logs_are_written(finished):
    workdir, _ = finished
    for split in ("train", "validation"):
        events = os.listdir(workdir / "logs" / split)
        assert any(name.startswith("events.out.tfevents") for name in events), split


def test_rerunning_a_finished_run_trains_nothing(finished, tmp_path):
    workdir, result = finished
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    again = run_fit(copy)
    assert again.initial_epoch == 3 and again.history == {} and again.steps == 3 * STEPS_PER_EPOCH
    assert max_weight_difference(again.model, result.model) == 0.0


def test_rerun_with_other_settings_is_refused(finished):
    workdir, _ = finished
    with pytest.raises(ConfigMismatchError, match=r"train\.learning_rate: recorded 0\.01, now 0\.1"):
        run_fit(workdir, dataclasses.replace(CONFIG, learning_rate=0.1))
    with pytest.raises(ConfigMismatchError, match=r"run\.backbone"):
        fit.check_resumable(str(workdir), CONFIG, {**RUN_SETTINGS, "backbone": "other"})


def test_more_epochs_or_steps_may_extend_a_run(finished):
    workdir, _ = finished
    for change in ({"epochs": 4}, {"max_steps": 100}):
        fit.check_resumable(str(workdir), dataclasses.replace(CONFIG, **change), RUN_SETTINGS)


# --- resume after a crash ----------------------------------------------------


def test_crashed_run_resumes_where_it_stopped(finished, tmp_path):
    _, reference = finished
    workdir = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        run_fit(workdir, callbacks=[CrashAtStep(2 * STEPS_PER_EPOCH + 1)])  # dies in epoch 2
    assert not (workdir / "encoder.keras").exists()
    resumed = run_fit(workdir)
    assert resumed.initial_epoch == 2 and resumed.steps == 3 * STEPS_PER_EPOCH
    assert list(resumed.history["loss"]) and len(resumed.history["loss"]) == 1
    recorded = json.loads((workdir / "config.json").read_text())["runtime"]
    assert recorded["resumed_from_epoch"] == 2 and recorded["resumed_from_step"] == 2 * STEPS_PER_EPOCH
    assert [int(row["epoch"]) for row in history_rows(workdir)] == [0, 1, 2]
    # Weights AND momentum buffers continued: the result equals the uninterrupted run.
    assert max_weight_difference(resumed.model, reference.model) < 1e-6
    for ours, theirs in zip(resumed.model.optimizer.variables, reference.model.optimizer.variables):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-7)


def test_max_steps_stops_early_and_counts_the_whole_run(tmp_path):
    config = dataclasses.replace(CONFIG, epochs=5, max_steps=3)
    first = run_fit(tmp_path, config, val=False)
    assert first.steps == 3 and int(first.model.optimizer.iterations.numpy()) == 3
    assert len(first.history["loss"]) == 2  # stopped in epoch 1
    assert (tmp_path / "encoder.keras").exists()
    again = run_fit(tmp_path, config, val=False)  # same command: already done
    assert again.history == {} and again.steps == 3 and int(again.model.optimizer.iterations.numpy()) == 3
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert best["monitor"] == "loss"  # no validation data


# --- precision and distribution ---------------------------------------------------


@pytest.mark.parametrize("mixed_precision", ["bfloat16", "float16"])
def test_mixed_precision_trains_with_float32_outputs(tmp_path, mixed_precision):
    config = dataclasses.replace(CONFIG, epochs=1, mixed_precision=mixed_precision)
    result = run_fit(tmp_path, config, val=False)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after fit
    assert np.isfinite(result.history["loss"]).all()
    assert result.model.get_layer("tiny_a_tap_final").compute_dtype == f"{mixed_precision}"
    images = next(iter(saliency_data(4, seed=2)))[0]
    trained = result.model.predict(images, verbose=0)
    assert trained.dtype == np.float32
    final = keras.saving.load_model(result.final_model_path)
    assert {layer.dtype_policy.name for layer in final.layers} == {"float32"}
    assert max_weight_difference(final, result.model) == 0.0
    exported = final.predict(images, verbose=0)
    assert exported.dtype == np.float32
    # Same weights, float32 compute: within the mixed precision's rounding.
    np.testing.assert_allclose(exported, trained, rtol=0.05, atol=0.05 * float(np.abs(exported).max()))


def test_mirrored_strategy_matches_the_default_strategy(finished, tmp_path):
    _, reference = finished
    result = run_fit(tmp_path, dataclasses.replace(CONFIG, distribution="mirrored"))
    assert json.loads((tmp_path / "config.json").read_text())["runtime"]["strategy"] == "MirroredStrategy"
    assert max_weight_difference(result.model, reference.model) < 1e-6


def test_kill_between_history_row_and_backup_leaves_no_duplicate_row_or_temp_file(tmp_path, monkeypatch):
    import subprocess

    from keras_emlnet import atomic_files
    from keras_emlnet.training import callbacks as training_callbacks

    workdir = tmp_path / "killed"
    original = training_callbacks.ModelSnapshots.on_epoch_end

    def dies_in_epoch_1(self, epoch, logs=None):  # after CSVLogger wrote epoch 1's row, before its backup
        if epoch == 1:
            raise KeyboardInterrupt
        original(self, epoch, logs)

    monkeypatch.setattr(training_callbacks.ModelSnapshots, "on_epoch_end", dies_in_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        run_fit(workdir)
    monkeypatch.setattr(training_callbacks.ModelSnapshots, "on_epoch_end", original)
    assert [int(row["epoch"]) for row in history_rows(workdir)] == [0, 1]
    # What a SIGKILL mid-write leaves: an empty temporary of a process that is gone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    prefix = atomic_files.temp_prefix().replace(f"-{os.getpid()}-", f"-{dead.pid}-")
    stale = workdir / "backup" / f"{prefix}x.weights.h5"
    stale.write_bytes(b"")
    resumed = run_fit(workdir)
    assert resumed.initial_epoch == 1
    assert [int(row["epoch"]) for row in history_rows(workdir)] == [0, 1, 2]
    assert not stale.exists()
