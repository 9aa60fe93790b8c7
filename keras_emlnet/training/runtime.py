"""Where and in what precision training runs: dtype policies and tf.distribute.

`TrainConfig.mixed_precision` and `TrainConfig.distribution` name these; the
functions here turn the names into Keras policies and TF strategies, and
undo their side effects (the global policy) when a run ends.
"""

import contextlib
import os
import shutil
import tempfile

import keras
import tensorflow as tf

# TrainConfig.mixed_precision -> Keras global dtype policy.
MIXED_PRECISION_POLICIES = {None: "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
DISTRIBUTIONS = (None, "mirrored", "multi_worker")


@contextlib.contextmanager
def policy_scope(mixed_precision):
    """Sets the global Keras dtype policy for `mixed_precision`; restores it after.

    Args:
        mixed_precision: None (float32), "bfloat16" or "float16".
    """
    if mixed_precision not in MIXED_PRECISION_POLICIES:
        raise ValueError(f"mixed_precision must be one of None, 'bfloat16', 'float16', got {mixed_precision!r}")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(MIXED_PRECISION_POLICIES[mixed_precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


_STRATEGIES = {}


def make_strategy(distribution):
    """Returns the tf.distribute strategy for a `TrainConfig.distribution`.

    None is the default (no-op) strategy; "mirrored" replicates over all local
    GPUs (the CPU when there are none); "multi_worker" reads the cluster from
    the TF_CONFIG environment variable. A process makes one strategy of each
    kind and returns it on every later call: a MultiWorkerMirroredStrategy
    configures the collective ops, which TensorFlow allows once and only
    before other TF work, so the stages call this before building any data.
    """
    if distribution is None:
        return tf.distribute.get_strategy()
    if distribution not in ("mirrored", "multi_worker"):
        raise ValueError(f"unknown distribution {distribution!r}; use one of {DISTRIBUTIONS}")
    if distribution not in _STRATEGIES:
        if distribution == "mirrored":
            _STRATEGIES[distribution] = tf.distribute.MirroredStrategy()
        else:
            _STRATEGIES[distribution] = tf.distribute.MultiWorkerMirroredStrategy()
            _fix_keras_multi_worker_log_reduction()
    return _STRATEGIES[distribution]


def _fix_keras_multi_worker_log_reduction():
    """Makes Keras 3.15 average scalar logs across workers with axis=None.

    Keras's `reduce_per_replica` (`keras/src/backend/tensorflow/trainer.py`)
    reduces every log of a multi-worker step with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails on the scalar losses
    and metrics ("Invalid reduction dimension 0 for input with 0
    dimensions"): no step can run. Scalars are averaged over the replicas
    (axis=None) instead; anything else goes to Keras's own function.
    """
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "_emlnet_fixed", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not trainer._collective_all_reduce_multi_worker(strategy):
            return original(values, strategy, reduction)

        def reduce(value):
            # One local replica: strategy.run returns plain tensors, not PerReplica values.
            local = value.values[0] if isinstance(value, tf.distribute.DistributedValues) else value
            if tf.is_tensor(local) and local.shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)
            return original(value, strategy, reduction)

        return keras.tree.map_structure(reduce, values)

    reduce_per_replica._emlnet_fixed = True
    trainer.reduce_per_replica = reduce_per_replica


def is_chief(strategy):
    """True for the worker that writes a run's shared outputs (always, off-cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def output_dir(workdir, strategy):
    """The folder this worker writes to: `workdir` (the chief), or a private temporary one.

    Every worker of a multi-worker run must save (saving reads replicated
    variables in lockstep), but only the chief writes the run folder; the
    others write to a fresh temporary folder (Keras's multi-worker pattern),
    which `remove_worker_dir` deletes when the run ends. Every worker
    restores from the chief's backup (`backup_dir`): the workers of one run
    share a filesystem or a bucket (gs://, s3://) for the run folder.
    """
    if is_chief(strategy):
        return workdir
    resolver = strategy.cluster_resolver
    return tempfile.mkdtemp(prefix=f"emlnet-{resolver.task_type}_{resolver.task_id}-")


def remove_worker_dir(out_dir, workdir):
    """Deletes a non-chief worker's temporary output folder (never the run folder)."""
    if os.path.abspath(out_dir) != os.path.abspath(workdir):
        shutil.rmtree(out_dir, ignore_errors=True)


def backup_dir(workdir):
    """The run's backup folder, which every worker restores from."""
    return os.path.join(workdir, "backup")


def distribute_dataset(dataset, distribution):
    """Returns `dataset` with the sharding options `distribution` needs."""
    if distribution != "multi_worker":
        return dataset
    options = tf.data.Options()
    # The datasets are a few files (or one folder of images): shard by element,
    # not by file, so that every worker gets data.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def synchronize_batch_norm(model):
    """Makes every BatchNormalization layer in `model` use the global batch's statistics.

    Under a strategy with several replicas each replica sees batch_size / N
    samples; Keras's BatchNormalization normalises a training batch with its
    replica's statistics unless ``synchronized`` (all-reduced moments), so the
    backbones' BN layers (NASNet, DenseNet, ResNet) would train on other
    statistics than one device with the same global batch (and on 1–2 samples
    a replica at the recipe's batch 8). Returns the number of layers changed.
    """
    changed = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized:
            layer.synchronized = True
            changed += 1
    return changed


def build_for_multi_worker(model, dataset):
    """Builds `model`'s compiled state from one batch of `dataset`, before `fit`, for MultiWorkerMirroredStrategy.

    Keras 3.15's `fit` under a strategy first builds the model from one
    distributed batch averaged with ``strategy.reduce("MEAN", batch)``
    (`keras/src/backend/tensorflow/trainer.py`, `_maybe_symbolic_build`);
    with two or more workers that reduce receives a nest of PerReplica
    values, which MultiWorkerMirroredStrategy cannot reduce ("Attempt to
    convert a value (PerReplica...) to a Tensor"). The same build is done
    here from an undistributed batch (shapes are all it needs), and `fit`'s
    step is skipped for this model.
    """
    batch = next(iter(dataset.take(1)))
    model._maybe_symbolic_build(data_batch=batch)  # in the strategy's scope, as fit does it
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def float32_copy(model):
    """Returns `model` rebuilt in float32 with the same weights.

    A model built under a mixed policy records that policy in every layer's
    config. The final model of a run is saved in float32 (its variables were
    float32 already) so that inference and the next training stage choose
    their own precision.
    """

    def strip_mixed(node):
        if isinstance(node, dict):
            policy_name = str(node.get("config", {}).get("name", "")) if node.get("class_name") == "DTypePolicy" else ""
            if policy_name.startswith("mixed_"):
                return {**node, "config": {**node["config"], "name": "float32"}}
            return {key: strip_mixed(value) for key, value in node.items()}
        if isinstance(node, list):
            return [strip_mixed(value) for value in node]
        return node

    serialized = strip_mixed(keras.saving.serialize_keras_object(model))
    with policy_scope(None):
        copy = keras.saving.deserialize_keras_object(serialized)
    copy.set_weights(model.get_weights())
    return copy
