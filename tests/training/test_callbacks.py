"""Epoch backups, model snapshots and step limits, on a small dense model."""

import json
import os

import keras
import numpy as np
import pytest

from keras_emlnet.training import callbacks as training_callbacks
from keras_emlnet.training.optimizers import TorchSGD

X = np.linspace(-1, 1, 24, dtype="float32").reshape(8, 3)
Y = (X @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")


def small_model(seed=0):
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, kernel_initializer=keras.initializers.GlorotUniform(seed)),
         keras.layers.Dense(1)], name="small")
    model.compile(optimizer=TorchSGD(0.05, momentum=0.9, weight_decay=1e-4), loss="mse")
    return model


def test_no_backup_means_a_fresh_start(tmp_path):
    assert training_callbacks.restore_backup(small_model(), str(tmp_path / "backup")) is None


def test_backup_keeps_one_consistent_state_and_restores_it(tmp_path):
    backup = tmp_path / "backup"
    model = small_model()
    counter = training_callbacks.StepCounter(initial_steps=10)
    model.fit(X, Y, batch_size=4, epochs=3, verbose=0, callbacks=[counter, training_callbacks.EpochBackup(backup, counter)])
    state = json.loads((backup / "state.json").read_text())
    assert state == {"epoch": 3, "weights": "epoch-0003.weights.h5", "step": 16, "optimizer_iterations": 6}
    assert sorted(os.listdir(backup)) == ["epoch-0003.weights.h5", "state.json"]  # older ones removed

    fresh = small_model(seed=1)
    assert training_callbacks.restore_backup(fresh, str(backup)) == training_callbacks.BackupState(epoch=3, step=16)
    for ours, theirs in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    assert int(fresh.optimizer.iterations.numpy()) == 6
    for ours, theirs in zip(fresh.optimizer.momentum_buffers, model.optimizer.momentum_buffers):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_backup_naming_a_missing_file_is_a_clear_error(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"epoch": 2, "weights": "epoch-0002.weights.h5", "step": 4}))
    with pytest.raises(FileNotFoundError, match="epoch-0002.weights.h5"):
        training_callbacks.restore_backup(small_model(), str(tmp_path))


def test_backup_of_another_architecture_is_refused(tmp_path):
    model = small_model()
    counter = training_callbacks.StepCounter()
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[counter, training_callbacks.EpochBackup(tmp_path, counter)])
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    other.compile(optimizer=TorchSGD(0.05), loss="mse")
    with pytest.raises(ValueError, match="does not fit"):
        training_callbacks.restore_backup(other, str(tmp_path))
    # Same layers, other optimizer: Keras would only warn and keep fresh momentum.
    plain = small_model()
    plain.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="optimizer state"):
        training_callbacks.restore_backup(plain, str(tmp_path))


def test_snapshots_keep_the_best_across_restarts(tmp_path):
    model = small_model()
    model.optimizer.build(model.trainable_variables)
    snapshots = training_callbacks.ModelSnapshots(tmp_path, monitor="val_loss")
    snapshots.set_model(model)
    snapshots.on_epoch_end(0, {"val_loss": 1.0})
    best_weights = model.get_weights()
    model.set_weights([w + 1.0 for w in best_weights])

    # A resumed run: a new callback instance must remember the best value.
    resumed = training_callbacks.ModelSnapshots(tmp_path, monitor="val_loss")
    resumed.set_model(model)
    resumed.on_epoch_end(1, {"val_loss": 2.0})
    best = keras.saving.load_model(tmp_path / "best.keras")
    for saved, expected in zip(best.get_weights(), best_weights):
        np.testing.assert_array_equal(saved, expected)
    last = keras.saving.load_model(tmp_path / "last.keras")
    np.testing.assert_array_equal(last.get_weights()[0], best_weights[0] + 1.0)

    resumed.on_epoch_end(2, {"val_loss": 0.5})
    assert json.loads((tmp_path / "best.json").read_text()) == {"monitor": "val_loss", "value": 0.5, "epoch": 2}
    np.testing.assert_array_equal(keras.saving.load_model(tmp_path / "best.keras").get_weights()[0],
                                  best_weights[0] + 1.0)
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tmp-")]  # atomic writes cleaned up


def test_step_counter_stops_mid_epoch_counting_earlier_steps():
    model = small_model()
    counter = training_callbacks.StepCounter(initial_steps=2, max_steps=7)
    history = model.fit(X, Y, batch_size=2, epochs=5, verbose=0, callbacks=[counter])
    assert counter.steps == 7 and int(model.optimizer.iterations.numpy()) == 5  # 4 per epoch: stopped in epoch 1
    assert len(history.history["loss"]) == 2
    with pytest.raises(ValueError, match="max_steps"):
        training_callbacks.StepCounter(max_steps=0)


def test_step_counter_counts_batches_not_keras_iterations():
    # Over a dataset of unknown length (the pipeline filters bad samples) Keras
    # 3.15 also bumps `optimizer.iterations` on each epoch's end-of-data call.
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((X, Y)).filter(lambda x, y: True).batch(4)
    model = small_model()
    counter = training_callbacks.StepCounter()
    model.fit(data, epochs=2, verbose=0, callbacks=[counter])
    assert counter.steps == 4
