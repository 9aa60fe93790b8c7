"""keras_emlnet.inference.folding: BatchNorm folded into convolutions gives the same outputs."""

import keras
import numpy as np
import tensorflow as tf

from keras_emlnet.inference.folding import FoldReport, InferenceBatchNormalization, fold_batch_norms


def randomize_batch_norms(model, seed=0):
    """Non-trivial statistics, so a wrong fold shows (fresh BN layers are the identity)."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 1, channels))
            layer.moving_variance.assign(rng.uniform(0.3, 3, channels))
            if layer.scale:
                layer.gamma.assign(rng.normal(1, 0.5, channels))
            if layer.center:
                layer.beta.assign(rng.normal(0, 1, channels))


def batch_norms(model):
    return [layer.name for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def every_kind_model():
    """One model with every foldable kind and every reason to keep a BatchNorm."""
    layers = keras.layers
    inputs = keras.Input((12, 16, 3))
    a = layers.Conv2D(6, 3, padding="same", use_bias=True, name="conv")(inputs)
    a = layers.BatchNormalization(epsilon=1e-5, name="conv_bn")(a)
    b = layers.SeparableConv2D(5, 3, padding="same", depth_multiplier=2, use_bias=False, name="sep")(a)
    b = layers.BatchNormalization(center=False, name="sep_bn")(b)
    c = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(b)
    c = layers.BatchNormalization(scale=False, name="dw_bn")(c)
    d = layers.Conv2D(4, 1, activation="relu", name="relu_conv")(c)
    d = layers.BatchNormalization(name="after_activation_bn")(d)
    e = layers.Conv2D(4, 1, name="shared_out_conv")(c)
    e_bn = layers.BatchNormalization(name="shared_out_bn")(e)
    joined = layers.Concatenate(name="concat")([d, e_bn, e])
    out = layers.BatchNormalization(name="after_concat_bn")(joined)
    return keras.Model(inputs, out, name="every_kind")


def test_every_foldable_kind_gives_equal_outputs_and_the_rest_is_kept():
    model = every_kind_model()
    randomize_batch_norms(model, seed=3)
    images = np.random.default_rng(0).uniform(-2, 2, (2, 12, 16, 3)).astype(np.float32)
    reference = model(images, training=False).numpy()
    report = FoldReport()
    folded = fold_batch_norms(model, report)
    assert sorted(report.folded) == ["conv_bn", "dw_bn", "sep_bn"]
    assert report.kept == {
        "after_activation_bn": "after a convolution with an activation",
        "shared_out_bn": "convolution output also read elsewhere",
        "after_concat_bn": "after Concatenate",
    }
    assert sorted(batch_norms(folded)) == ["after_activation_bn", "after_concat_bn", "shared_out_bn"]
    np.testing.assert_allclose(folded(images, training=False).numpy(), reference, rtol=1e-5, atol=1e-5)
    # The original is untouched and still the reference.
    assert len(batch_norms(model)) == 6
    np.testing.assert_array_equal(model(images, training=False).numpy(), reference)


def test_tiny_emlnet_folds_nested_encoders_with_equal_maps_and_taps():
    from keras_emlnet.models.emlnet import EMLNet
    from keras_emlnet.testing import tiny_emlnet

    model = tiny_emlnet((32, 48), output_mode="log_density")
    randomize_batch_norms(model, seed=5)
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 48, 3)).astype(np.float32)
    report = FoldReport()
    folded = fold_batch_norms(model, report)
    assert isinstance(folded, EMLNet) and folded.decoder is model.decoder
    assert sorted(report.folded) == ["tiny_a_conv2_bn", "tiny_b_conv2_bn"]
    assert batch_norms(folded) == []
    want, got = model.extractor(images), folded.extractor(images)
    assert sorted(want) == sorted(got)
    for tap in want:
        np.testing.assert_allclose(got[tap].numpy(), want[tap].numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(folded(images).numpy(), model(images).numpy(), rtol=1e-5, atol=1e-5)
    assert (folded.input_size, folded.resize_mode, folded.output_mode) == (
        model.input_size, model.resize_mode, model.output_mode)


def test_copy_shares_no_layer_so_a_policy_on_it_leaves_the_original_float32():
    from keras_emlnet.inference.predictor import set_compute_precision
    from keras_emlnet.testing import tiny_emlnet

    model = tiny_emlnet((32, 48))
    randomize_batch_norms(model, seed=6)
    folded = fold_batch_norms(model, copy=True)
    images = np.random.default_rng(2).uniform(0, 255, (1, 32, 48, 3)).astype(np.float32)
    # equal in float32 before the policy changes (each folded BatchNorm is applied once, not twice)
    np.testing.assert_allclose(folded(images).numpy(), model(images).numpy(), rtol=1e-5, atol=1e-5)
    original_ids = {id(layer) for layer in model._flatten_layers(include_self=False, recursive=True)}
    shared = [layer.name for layer in folded._flatten_layers(include_self=False, recursive=True)
              if id(layer) in original_ids and not isinstance(layer, keras.layers.InputLayer)]
    assert shared == []
    set_compute_precision(folded, "bfloat16")
    assert all(layer.dtype_policy.name == "float32"
               for layer in model._flatten_layers(include_self=False, recursive=True))
    reduced = folded(images).numpy()
    exact = model(images).numpy()
    assert not np.array_equal(reduced, exact)  # bfloat16 rounding shows...
    assert np.corrcoef(reduced.ravel(), exact.ravel())[0, 1] > 0.99  # ...on the same map


def test_a_model_without_batch_norms_comes_back_as_is():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    assert fold_batch_norms(model) is model


def separable_branch(inputs, name):
    x = keras.layers.SeparableConv2D(5, 3, padding="same", use_bias=False, name=name)(inputs)
    return keras.layers.BatchNormalization(epsilon=1e-3, name=f"{name}_bn")(x)


def nasnet_like_cell():
    """NASNet's cell shapes: Adds of two folded branches, one Add read twice (AvgPool + ReLU)."""
    layers = keras.layers
    inputs = keras.Input((12, 16, 4))
    once = layers.add([separable_branch(inputs, "a"), separable_branch(inputs, "b")], name="add_once")
    twice = layers.add([separable_branch(inputs, "c"), separable_branch(inputs, "d")], name="add_twice")
    pooled = layers.AveragePooling2D(3, 1, padding="same", name="pool")(twice)
    activated = layers.ReLU(name="relu")(twice)
    joined = layers.Concatenate(name="concat")([once, pooled, activated])
    out = layers.BatchNormalization(epsilon=1.001e-5, name="after_concat_bn")(joined)
    return keras.Model(inputs, layers.ReLU()(out), name="cell")


def test_biases_summed_by_an_add_move_so_one_bias_remains_and_outputs_stay_equal():
    model = nasnet_like_cell()
    randomize_batch_norms(model, seed=7)
    images = np.random.default_rng(3).normal(0, 2, (2, 12, 16, 4)).astype(np.float32)
    reference = model(images, training=False).numpy()
    for copy in (False, True):
        report = FoldReport()
        folded = fold_batch_norms(model, report, copy=copy)
        by_name = {layer.name: layer for layer in folded.layers}
        assert report.merged_biases == 3
        # read once: the last input keeps the (summed) bias; read twice: the bias follows the Add
        assert [by_name[n].use_bias for n in "abcd"] == [False, True, False, False]
        assert isinstance(by_name["add_twice_bias"], keras.layers.Rescaling)
        assert isinstance(by_name["after_concat_bn"], InferenceBatchNormalization)
        np.testing.assert_allclose(folded(images, training=False).numpy(), reference, rtol=1e-5, atol=1e-5)
        # ...also in a traced graph, where the kept BatchNorm runs as FusedBatchNormV3.
        traced = tf.function(lambda x, m=folded: m(x, training=False))
        graph_ops = {op.type for op in traced.get_concrete_function(tf.constant(images)).graph.get_operations()}
        assert "FusedBatchNormV3" in graph_ops
        np.testing.assert_allclose(traced(tf.constant(images)).numpy(), reference, rtol=1e-5, atol=1e-5)


def test_fused_inference_batch_norm_matches_keras_and_round_trips(tmp_path):
    bn = keras.layers.BatchNormalization(epsilon=1e-3, center=False)
    fused = InferenceBatchNormalization.from_config(bn.get_config())
    images = np.random.default_rng(4).normal(0, 2, (2, 5, 6, 3)).astype(np.float32)
    bn(images)
    fused(images)
    rng = np.random.default_rng(5)
    bn.set_weights([rng.uniform(0.5, 1.5, 3), rng.normal(0, 1, 3), rng.uniform(0.3, 3, 3)])
    fused.set_weights(bn.get_weights())
    want = bn(images, training=False).numpy()
    np.testing.assert_allclose(fused(images, training=False).numpy(), want, rtol=1e-5, atol=1e-5)
    inputs = keras.Input((5, 6, 3))
    model = keras.Model(inputs, fused(inputs))
    model.save(tmp_path / "fused.keras")
    loaded = keras.saving.load_model(tmp_path / "fused.keras")
    assert isinstance(loaded.layers[-1], InferenceBatchNormalization)
    np.testing.assert_allclose(loaded(images).numpy(), want, rtol=1e-5, atol=1e-5)
