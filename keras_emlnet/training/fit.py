"""Resumable training shared by train.encoder, train.decoder and train.finetune.

`fit(model_fn, train_data, val_data, config, workdir, loss=...)` trains a
model with the EML-NET recipe and leaves, in `workdir`:

    config.json            every setting used: TrainConfig, the run's own
                           settings (backbone, dataset, ...), runtime facts
    backup/                the training state after the last finished epoch
    checkpoints/last.keras, best.keras (+ best.json)
    logs/                  TensorBoard (train/, validation/)
    history.csv            one row per finished epoch
    <final_model_name>     the trained model, float32, saved atomically

Rerunning the same command continues from the last finished epoch (weights,
momentum buffers, step counter, learning rate). A rerun whose settings differ
from the recorded ones raises `ConfigMismatchError`, except `epochs` and
`max_steps`, which may grow to extend a run.

Batch size is global: under tf.distribute each of N replicas gets
`batch_size / N` examples per step.
"""

import dataclasses
import datetime
import json
import os
import sys
from typing import Any, Callable, Optional, Sequence

import keras
import tensorflow as tf

from keras_emlnet import atomic_files as io_utils
from keras_emlnet.training import optimizers
from keras_emlnet.training import runtime
from keras_emlnet.training import callbacks as training_callbacks

# Settings a rerun may change without invalidating the saved training state.
EXTENDABLE_SETTINGS = ("epochs", "max_steps")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every training setting; the defaults are the paper's encoder recipe.

    Attributes:
        epochs: epochs to train in all (a resumed run counts the earlier ones).
        batch_size: global batch size (split across tf.distribute replicas).
        learning_rate: learning rate of epoch 0 (see WORKSPACE.md for 0.01).
        lr_decay_epochs: 0-based epochs at which the rate is multiplied by
            `lr_decay_factor` (`optimizers.step_decay_learning_rate`): (5,)
            is "x0.1 after 5 epochs" (encoders), (3,) the decoder's "x0.1 at 3".
        lr_decay_factor: the multiplier at each decay epoch.
        momentum: SGD momentum (PyTorch semantics, `optimizers.TorchSGD`).
        weight_decay: L2 coefficient added to the gradient, as PyTorch SGD.
        mixed_precision: None (float32), "bfloat16" or "float16": the Keras
            mixed policy while building and training (variables stay float32,
            the loss is computed in float32; float16 adds loss scaling).
        distribution: None (default strategy), "mirrored" (all local GPUs, or
            the CPU) or "multi_worker" (MultiWorkerMirroredStrategy, TF_CONFIG).
        max_steps: stop after this many training batches in all (smoke runs).
        steps_per_epoch: steps per epoch (the training data is repeated);
            None: one pass over the data.
        validation_steps: validation batches per epoch; None: all.
        seed: seeds Python, NumPy and TF (model init) and the data order.
        input_size: (H, W) model input size.
    """

    epochs: int = 10
    batch_size: int = 8
    learning_rate: float = 0.01
    lr_decay_epochs: tuple = (5,)
    lr_decay_factor: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    mixed_precision: Optional[str] = None
    distribution: Optional[str] = None
    max_steps: Optional[int] = None
    steps_per_epoch: Optional[int] = None
    validation_steps: Optional[int] = None
    seed: int = 0
    input_size: tuple = (480, 640)

    def __post_init__(self):
        object.__setattr__(self, "lr_decay_epochs", tuple(int(e) for e in self.lr_decay_epochs))
        object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "steps_per_epoch", "validation_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"TrainConfig.{name} must be None or >= 1, got {value}")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainConfig.learning_rate must be > 0, got {self.learning_rate}")
        if not 0 < self.lr_decay_factor <= 1:
            raise ValueError(f"TrainConfig.lr_decay_factor must be in (0, 1], got {self.lr_decay_factor}")
        if list(self.lr_decay_epochs) != sorted(set(self.lr_decay_epochs)) or any(e < 1 for e in self.lr_decay_epochs):
            raise ValueError(
                f"TrainConfig.lr_decay_epochs must be increasing epochs >= 1, got {self.lr_decay_epochs}"
            )
        if self.mixed_precision not in runtime.MIXED_PRECISION_POLICIES:
            raise ValueError(
                f"TrainConfig.mixed_precision must be one of None, 'bfloat16', 'float16', got {self.mixed_precision!r}"
            )
        if self.distribution not in runtime.DISTRIBUTIONS:
            raise ValueError(
                f"TrainConfig.distribution must be one of {runtime.DISTRIBUTIONS}, got {self.distribution!r}"
            )
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ValueError(f"TrainConfig.input_size must be (H, W) with positive sizes, got {self.input_size}")

    def to_dict(self):
        """Returns the settings as a JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values):
        """Builds a TrainConfig from `to_dict()` output; unknown keys are an error."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig settings {unknown}; known: {sorted(known)}")
        return cls(**values)


class ConfigMismatchError(ValueError):
    """A workdir holds a run started with other settings than this one."""


@dataclasses.dataclass
class FitResult:
    """What `fit` returns.

    Attributes:
        model: the trained model (in the training dtype policy).
        final_model_path: where the float32 final model was saved.
        initial_epoch: the epoch this call started from (> 0 when resumed).
        steps: batches trained in the whole run so far.
        history: {log name: per-epoch values} of the epochs this call ran.
    """

    model: Any
    final_model_path: str
    initial_epoch: int
    steps: int
    history: dict


def make_optimizer(config):
    """The recipe's optimizer: PyTorch-style SGD (momentum, L2 weight decay)."""
    return optimizers.TorchSGD(
        learning_rate=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay
    )


def learning_rate_callback(config):
    """A callback setting the step-decay learning rate at each epoch's start."""
    return keras.callbacks.LearningRateScheduler(
        lambda epoch, _: optimizers.step_decay_learning_rate(
            epoch, config.learning_rate, config.lr_decay_epochs, config.lr_decay_factor
        )
    )


def _json_ready(value):
    return json.loads(json.dumps(value, default=io_utils._json_default))


def check_resumable(workdir, config, run_settings):
    """Raises ConfigMismatchError if `workdir` resumes a run with other settings.

    A workdir with no backup and no final model holds nothing to resume, so
    any settings may start there.
    """
    config_path = os.path.join(workdir, "config.json")
    has_state = os.path.isfile(os.path.join(workdir, "backup", "state.json"))
    if not (has_state and os.path.isfile(config_path)):
        return
    with open(config_path, encoding="utf-8") as f:
        recorded = json.load(f)
    now = {"train": config.to_dict(), "run": _json_ready(run_settings)}
    differences = []
    for section in ("train", "run"):
        before, after = recorded.get(section, {}), now[section]
        for key in sorted(set(before) | set(after)):
            if section == "train" and key in EXTENDABLE_SETTINGS:
                continue
            if before.get(key) != after.get(key):
                differences.append(f"{section}.{key}: recorded {before.get(key)!r}, now {after.get(key)!r}")
    if differences:
        raise ConfigMismatchError(
            f"{workdir} holds a run started with other settings ({'; '.join(differences)}). "
            f"Rerun with the recorded settings (see {config_path}) to resume it, or use a new workdir. "
            f"Only {', '.join(EXTENDABLE_SETTINGS)} may change when resuming."
        )


def _runtime_facts(strategy, start):
    return {
        "argv": list(sys.argv),
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": sys.version.split()[0],
        "strategy": type(strategy).__name__,
        "num_replicas": strategy.num_replicas_in_sync,
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "dtype_policy": keras.mixed_precision.global_policy().name,
        "resumed_from_epoch": start.epoch,
        "resumed_from_step": start.step,
    }


def fit(
    model_fn: Callable[[], keras.Model],
    train_data: tf.data.Dataset,
    val_data: Optional[tf.data.Dataset],
    config: TrainConfig,
    workdir: str,
    *,
    loss: keras.losses.Loss,
    metrics: Sequence[Callable[[], keras.metrics.Metric]] = (),
    run_settings: Optional[dict] = None,
    final_model_name: str = "model.keras",
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 0,
) -> FitResult:
    """Trains `model_fn()` with the recipe in `config`, resumably, in `workdir`.

    Args:
        model_fn: builds the (uncompiled, built) model; called inside the
            mixed-precision policy and the distribution scope.
        train_data: batched (x, y) training data, batch `config.batch_size`.
        val_data: batched validation data, or None.
        config: the TrainConfig.
        workdir: the run's folder (created; see the module docstring).
        loss: the loss (computed in float32 whatever the policy).
        metrics: metric factories (e.g. classes), instantiated in the scope.
        run_settings: the run's own settings (backbone, dataset, ...),
            recorded in config.json and checked on resume; JSON-ready.
        final_model_name: file name of the final model in `workdir`.
        callbacks: extra callbacks (run before the checkpointing ones).
        verbose: Keras `fit` verbosity.

    Returns:
        A FitResult.

    Raises:
        ConfigMismatchError: `workdir` holds a run with other settings.
    """
    workdir = os.path.abspath(os.fspath(workdir))
    run_settings = _json_ready(run_settings or {})
    check_resumable(workdir, config, run_settings)
    keras.utils.set_random_seed(config.seed)
    with runtime.policy_scope(config.mixed_precision):
        strategy = runtime.make_strategy(config.distribution)
        out_dir = runtime.output_dir(workdir, strategy)
        with strategy.scope():
            model = model_fn()
            model.compile(optimizer=make_optimizer(config), loss=loss, metrics=[make() for make in metrics])
            start = training_callbacks.restore_backup(model, os.path.join(out_dir, "backup"))
        start = start or training_callbacks.BackupState(epoch=0, step=0)
        io_utils.write_json_atomic(
            os.path.join(out_dir, "config.json"),
            {
                "train": config.to_dict(),
                "run": run_settings,
                "runtime": _runtime_facts(strategy, start),
                "final_model": final_model_name,
            },
        )
        steps = training_callbacks.StepCounter(start.step, config.max_steps)
        done = start.epoch >= config.epochs or (config.max_steps is not None and start.step >= config.max_steps)
        history = {}
        if not done:
            train_data = _training_data(train_data, config)
            history = model.fit(
                train_data,
                validation_data=None if val_data is None else runtime.distribute_dataset(val_data, config.distribution),
                epochs=config.epochs,
                initial_epoch=start.epoch,
                steps_per_epoch=config.steps_per_epoch,
                validation_steps=config.validation_steps,
                callbacks=_callbacks(config, out_dir, val_data is not None, steps, callbacks),
                shuffle=False,  # tf.data input: the pipeline shuffles (seeded)
                verbose=verbose,
            ).history
    final = model if config.mixed_precision is None else runtime.float32_copy(model)
    final_path = os.path.join(out_dir, final_model_name)
    with io_utils.atomic_path(final_path) as tmp:
        final.save(tmp)
    return FitResult(
        model=model, final_model_path=final_path, initial_epoch=start.epoch, steps=steps.steps, history=history
    )


def _training_data(dataset, config):
    dataset = runtime.distribute_dataset(dataset, config.distribution)
    # With a fixed epoch length the data must not run out mid-epoch.
    return dataset.repeat() if config.steps_per_epoch is not None else dataset


def _callbacks(config, out_dir, has_validation, step_counter, extra):
    return [
        learning_rate_callback(config),
        *extra,
        step_counter,
        keras.callbacks.TensorBoard(log_dir=os.path.join(out_dir, "logs")),
        keras.callbacks.CSVLogger(os.path.join(out_dir, "history.csv"), append=True),
        training_callbacks.ModelSnapshots(
            os.path.join(out_dir, "checkpoints"), monitor="val_loss" if has_validation else "loss"
        ),
        # Last: the backup marks the epoch finished only after every other
        # output of the epoch is on disk.
        training_callbacks.EpochBackup(os.path.join(out_dir, "backup"), step_counter),
    ]
