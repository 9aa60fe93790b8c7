"""Callbacks and run-state files that make `keras_emlnet.training.fit.fit` resumable.

Everything here writes atomically (`keras_emlnet.atomic_files`), so a run
killed at any moment leaves the previous complete state on disk, never a
truncated file:

- `EpochBackup` + `restore_backup`: the training state (model weights,
  optimizer state incl. momentum buffers, learning rate and step counter)
  after each finished epoch. Weights go to a new file first and the
  `state.json` that names them is replaced after it, so the pair is always
  consistent. Unlike `keras.callbacks.BackupAndRestore` (which overwrites its
  weights file in place and writes the epoch number separately), a kill
  mid-write cannot leave a corrupt or mismatched backup, and the restored
  epoch is known before `Model.fit` starts (so a finished run is not re-entered).
- `ModelSnapshots`: `last.keras` every epoch and `best.keras` when the
  monitored value improves; the best value is kept in `best.json` so a resumed
  run does not overwrite a better model from before the interruption.
- `StepCounter`: counts the batches trained in the whole run (restored from
  the backup) and ends training at `max_steps`. Not the optimizer's
  `iterations`: Keras 3.15 also increments that on the end-of-data call of
  every epoch over a dataset of unknown length (ours filter bad samples),
  without updating any weight.
- `EpochLogger`: one log line per epoch through Python logging (absl in CLIs).
"""

import csv
import dataclasses
import glob
import io
import json
import logging
import math
import os

import keras

from keras_emlnet import atomic_files

_BACKUP_STATE = "state.json"
_LOG = logging.getLogger(__name__)


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"cannot read run state {path}: {error}") from error


@dataclasses.dataclass(frozen=True)
class BackupState:
    """Where a backup stands: `epoch` epochs finished, `step` batches trained."""

    epoch: int
    step: int


def restore_backup(model, backup_dir):
    """Restores the last epoch backup in `backup_dir` into a compiled `model`.

    Args:
        model: a built and compiled keras.Model of the same architecture and
            optimizer as the one that wrote the backup.
        backup_dir: the folder `EpochBackup` writes.

    Returns:
        A BackupState (its `epoch` is the 0-based epoch to continue from), or
        None when `backup_dir` holds no backup.

    Raises:
        FileNotFoundError: the state names a weights file that is missing.
        ValueError: the backup does not fit the model or its optimizer.
    """
    state_path = os.path.join(backup_dir, _BACKUP_STATE)
    if not os.path.isfile(state_path):
        return None
    state = _read_json(state_path)
    weights_path = os.path.join(backup_dir, state["weights"])
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(f"backup state {state_path} names {weights_path}, which is missing")
    if model.optimizer is not None and not model.optimizer.built:
        # Build the optimizer's variables (momentum buffers, step counter) so
        # that load_weights restores them too, not only the model's.
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(weights_path)
    except (ValueError, KeyError) as error:
        raise ValueError(f"backup {weights_path} does not fit model {model.name!r}: {error}") from error
    # Keras only warns when the optimizer's variables do not match (then it
    # leaves them fresh): resuming without momentum buffers is not resuming.
    iterations = state.get("optimizer_iterations")
    if iterations is not None and int(model.optimizer.iterations.numpy()) != int(iterations):
        raise ValueError(
            f"backup {weights_path} holds optimizer state that does not fit the optimizer of model "
            f"{model.name!r} (was the run started with another optimizer or precision?)"
        )
    return BackupState(epoch=int(state["epoch"]), step=int(state["step"]))


class EpochBackup(keras.callbacks.Callback):
    """Writes the full training state to `backup_dir` after every epoch.

    Args:
        backup_dir: folder for `epoch-NNNN.weights.h5` and `state.json`.
        step_counter: the run's StepCounter (its count is saved with the state).
    """

    def __init__(self, backup_dir, step_counter):
        super().__init__()
        self.backup_dir = os.fspath(backup_dir)
        self.step_counter = step_counter

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        finished = epoch + 1
        weights_name = f"epoch-{finished:04d}.weights.h5"
        with atomic_files.atomic_path(os.path.join(self.backup_dir, weights_name)) as tmp:
            # save_weights includes the optimizer's variables.
            self.model.save_weights(tmp)
        state = {
            "epoch": finished,
            "weights": weights_name,
            "step": self.step_counter.steps,
            "optimizer_iterations": int(self.model.optimizer.iterations.numpy()),
        }
        atomic_files.write_json_atomic(os.path.join(self.backup_dir, _BACKUP_STATE), state)
        # Only after the new state is in place may older backups go.
        for old in glob.glob(os.path.join(self.backup_dir, "epoch-*.weights.h5")):
            if os.path.basename(old) != weights_name:
                os.remove(old)


def trim_history(path, epochs):
    """Keeps only the rows of epochs < `epochs` in a CSVLogger file (header kept).

    A run killed after CSVLogger wrote an epoch's row but before that epoch's
    backup repeats the epoch when resumed; without this its row would appear
    twice in history.csv. Rewritten atomically; a missing file is fine.
    """
    if not os.path.isfile(path):
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or "epoch" not in rows[0]:
        return
    column = rows[0].index("epoch")
    kept = [rows[0]] + [row for row in rows[1:] if len(row) > column and row[column].isdigit()
                        and int(row[column]) < epochs]
    if len(kept) == len(rows):
        return
    buffer = io.StringIO()
    csv.writer(buffer).writerows(kept)  # the excel dialect CSVLogger writes with (sep ",")
    atomic_files.write_text_atomic(path, buffer.getvalue())


class ModelSnapshots(keras.callbacks.Callback):
    """Saves `last.keras` each epoch and `best.keras` on improvement.

    Args:
        checkpoint_dir: output folder.
        monitor: the epoch log to watch (e.g. "val_loss").
        mode: "min" or "max": which direction is better.
    """

    def __init__(self, checkpoint_dir, monitor="val_loss", mode="min"):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"ModelSnapshots mode must be 'min' or 'max', got {mode!r}")
        self.checkpoint_dir = os.fspath(checkpoint_dir)
        self.monitor = monitor
        self.mode = mode
        self.best_path = os.path.join(self.checkpoint_dir, "best.keras")
        self.last_path = os.path.join(self.checkpoint_dir, "last.keras")
        self._best_state_path = os.path.join(self.checkpoint_dir, "best.json")

    def _best_so_far(self):
        if not os.path.isfile(self._best_state_path):
            return None
        state = _read_json(self._best_state_path)
        return state["value"] if state.get("monitor") == self.monitor else None

    def _improves(self, value, best):
        if best is None:
            return True
        return value < best if self.mode == "min" else value > best

    def on_epoch_end(self, epoch, logs=None):
        with atomic_files.atomic_path(self.last_path) as tmp:
            self.model.save(tmp)
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        value = float(value)
        if self._improves(value, self._best_so_far()):
            with atomic_files.atomic_path(self.best_path) as tmp:
                self.model.save(tmp)
            atomic_files.write_json_atomic(
                self._best_state_path, {"monitor": self.monitor, "value": value, "epoch": epoch}
            )


class StepCounter(keras.callbacks.Callback):
    """Counts trained batches over the whole run; stops at `max_steps`.

    Args:
        initial_steps: batches trained before this process (from the backup).
        max_steps: stop once this many batches are trained in all (None: no
            limit). Keras still ends the epoch it stops in (validation, epoch
            callbacks), and that epoch counts as finished for resuming.
    """

    def __init__(self, initial_steps=0, max_steps=None):
        super().__init__()
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be None or >= 1, got {max_steps}")
        self.steps = int(initial_steps)
        self.max_steps = max_steps

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.max_steps is not None and self.steps >= self.max_steps:
            self.model.stop_training = True


class EpochLogger(keras.callbacks.Callback):
    """Logs each epoch's results (losses, metrics, learning rate) as one line."""

    def on_epoch_end(self, epoch, logs=None):
        values = ", ".join(f"{name}={float(value):.6g}" for name, value in sorted((logs or {}).items()))
        _LOG.info("epoch %d: %s", epoch, values)
