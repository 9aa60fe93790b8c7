"""Resumable training shared by train.encoder, train.decoder and train.finetune.

`fit(model_fn, train_data, val_data, config, workdir, loss=...)` trains a
model with the EML-NET recipe (a `keras_emlnet.training.config.TrainConfig`)
and leaves, in `workdir`:

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

`fit_saliency_model` is the call every EML-NET stage makes (encoder, decoder,
both fine-tuning stages): `fit` with the EML loss and the saliency metrics.
"""

import dataclasses
import datetime
import json
import os
import sys
from typing import Any, Callable, Optional, Sequence

import keras
import tensorflow as tf

from keras_emlnet import atomic_files
from keras_emlnet.losses import EMLLoss
from keras_emlnet.metrics import keras as keras_metrics
from keras_emlnet.training import callbacks as training_callbacks
from keras_emlnet.training import optimizers
from keras_emlnet.training import runtime
from keras_emlnet.training.config import ConfigMismatchError, TrainConfig

# Settings a rerun may change without invalidating the saved training state.
EXTENDABLE_SETTINGS = ("epochs", "max_steps")
# What every EML-NET stage reports on its validation split each epoch.
SALIENCY_METRICS = (keras_metrics.NSS, keras_metrics.CC, keras_metrics.KLD, keras_metrics.SIM)


@dataclasses.dataclass
class FitResult:
    """What `fit` returns.

    Attributes:
        model: the trained model (in the training dtype policy).
        final_model_path: where the float32 final model was saved.
        initial_epoch: the epoch this call started from (> 0 when resumed).
        steps: batches trained in the whole run so far.
        history: {log name: per-epoch values} of the epochs this call ran.
        is_chief: False on the non-chief workers of a multi-worker run, which
            must not write the run folder (the stages skip their own outputs).
    """

    model: Any
    final_model_path: str
    initial_epoch: int
    steps: int
    history: dict
    is_chief: bool = True


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
    return json.loads(json.dumps(value, default=atomic_files._json_default))


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
        for folder in (out_dir, os.path.join(out_dir, "backup"), os.path.join(out_dir, "checkpoints")):
            atomic_files.remove_stale_temp_files(folder)  # left by a run killed mid-write
        with strategy.scope():
            model = model_fn()
            if strategy.num_replicas_in_sync > 1:
                runtime.synchronize_batch_norm(model)  # batch statistics of the global batch, as on one device
            model.compile(optimizer=make_optimizer(config), loss=loss, metrics=[make() for make in metrics])
            start = training_callbacks.restore_backup(model, runtime.backup_dir(workdir))
        start = start or training_callbacks.BackupState(epoch=0, step=0)
        atomic_files.write_json_atomic(
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
            # Rows of epochs about to be trained again (a kill after CSVLogger, before the backup).
            training_callbacks.trim_history(os.path.join(out_dir, "history.csv"), start.epoch)
            if config.distribution == "multi_worker":
                runtime.build_for_multi_worker(model, train_data)
            train_data, steps_per_epoch = _training_data(train_data, config, start)
            history = model.fit(
                train_data,
                validation_data=None if val_data is None else runtime.distribute_dataset(val_data, config.distribution),
                epochs=config.epochs,
                initial_epoch=start.epoch,
                steps_per_epoch=steps_per_epoch,
                validation_steps=config.validation_steps,
                callbacks=_callbacks(config, out_dir, val_data is not None, steps, callbacks),
                shuffle=False,  # tf.data input: the pipeline shuffles (seeded)
                verbose=verbose,
            ).history
    final = model if config.mixed_precision is None else runtime.float32_copy(model)
    final_path = os.path.join(out_dir, final_model_name)
    with atomic_files.atomic_path(final_path) as tmp:
        final.save(tmp)
    if out_dir != workdir:  # a non-chief worker: its copy of the outputs was scratch
        runtime.remove_worker_dir(out_dir, workdir)
        final_path = os.path.join(workdir, final_model_name)
    return FitResult(
        model=model, final_model_path=final_path, initial_epoch=start.epoch, steps=steps.steps, history=history,
        is_chief=out_dir == workdir,
    )


def fit_saliency_model(model_fn, train_data, val_data, config, workdir, *, run_settings, final_model_name,
                       callbacks=(), verbose=0):
    """`fit` with `EMLLoss` and `SALIENCY_METRICS` (NSS, CC, KLD, SIM): one EML-NET training stage.

    Args:
        model_fn, train_data, val_data, config, workdir: as for `fit`.
        run_settings: the stage's own settings, recorded in config.json and
            checked on resume.
        final_model_name: file name of the trained model in `workdir`.
        callbacks: extra Keras callbacks.
        verbose: Keras `fit` verbosity.

    Returns:
        The FitResult.
    """
    return fit(
        model_fn,
        train_data,
        val_data,
        config,
        workdir,
        loss=EMLLoss(),
        metrics=SALIENCY_METRICS,
        run_settings=run_settings,
        final_model_name=final_model_name,
        callbacks=callbacks,
        verbose=verbose,
    )


def _training_data(dataset, config, start):
    """(dataset, steps_per_epoch) for Model.fit, continuing the run's data order from `start`.

    A `build_dataset(training=True)` dataset carries `epoch_stream`: epochs
    whose order is a function of (seed, epoch), entered `start.step` batches
    in, so a resumed run sees what an uninterrupted one would have. Keras
    keeps one iterator over it across epochs (steps_per_epoch is set: one
    pass of the data, or the config's). Other datasets are iterated afresh
    each epoch (repeated when the config fixes the epoch length).
    """
    stream = getattr(dataset, "epoch_stream", None)
    if stream is not None:
        steps = config.steps_per_epoch or dataset.batches_per_epoch
        return runtime.distribute_dataset(stream(start.step), config.distribution), steps
    dataset = runtime.distribute_dataset(dataset, config.distribution)
    # With a fixed epoch length the data must not run out mid-epoch.
    if config.steps_per_epoch is not None:
        return dataset.repeat(), config.steps_per_epoch
    return dataset, None


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
