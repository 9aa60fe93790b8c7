"""Dtype policies, strategies and the float32 copy of a mixed-precision model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_emlnet import testing
from keras_emlnet.training import runtime


def test_policy_scope_sets_and_restores_the_global_policy():
    assert keras.mixed_precision.global_policy().name == "float32"
    with runtime.policy_scope("bfloat16"):
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    with pytest.raises(RuntimeError):
        with runtime.policy_scope("float16"):
            assert keras.mixed_precision.global_policy().name == "mixed_float16"
            raise RuntimeError("fails inside")
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(ValueError, match="mixed_precision"):
        with runtime.policy_scope("float8"):
            pass


def test_float32_copy_of_a_bfloat16_encoder(rng):
    with runtime.policy_scope("bfloat16"):
        mixed = testing.tiny_encoder(input_size=(32, 48))
    assert mixed.get_layer("tiny_a_tap_s2").compute_dtype == "bfloat16"
    copy = runtime.float32_copy(mixed)
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    assert [layer.name for layer in copy.layers] == [layer.name for layer in mixed.layers]
    for ours, theirs in zip(copy.get_weights(), mixed.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    images = rng.uniform(0, 255, (2, 32, 48, 3)).astype("float32")
    exact = copy.predict(images, verbose=0)
    rounded = mixed.predict(images, verbose=0)
    assert exact.dtype == rounded.dtype == np.float32
    np.testing.assert_allclose(rounded, exact, rtol=0.05, atol=0.05 * float(np.abs(exact).max()))


def test_strategies_by_name():
    assert runtime.make_strategy(None) is tf.distribute.get_strategy()
    assert isinstance(runtime.make_strategy("mirrored"), tf.distribute.MirroredStrategy)
    with pytest.raises(ValueError, match="tpu"):
        runtime.make_strategy("tpu")
    assert runtime.is_chief(tf.distribute.get_strategy())
    assert runtime.output_dir("/runs/x", tf.distribute.get_strategy()) == "/runs/x"


def test_multi_worker_datasets_shard_by_element():
    dataset = tf.data.Dataset.range(4)
    sharded = runtime.distribute_dataset(dataset, "multi_worker")
    assert sharded.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA
    assert runtime.distribute_dataset(dataset, "mirrored") is dataset
