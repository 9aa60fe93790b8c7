"""BatchNorm folded into the convolution before it: an inference-only model rewrite.

In inference a BatchNormalization layer is a per-channel affine map
``y = x * s + (beta - mean * s)`` with ``s = gamma / sqrt(var + eps)``. When
its input is the output of a linear (no activation) ``Conv2D``,
``SeparableConv2D`` or ``DepthwiseConv2D`` that nothing else reads, the map
folds into that layer: its kernel's output channels are scaled by ``s`` and
it gains a bias, and the BatchNorm disappears from the graph. TensorFlow does
not do this itself for Keras 3 layers: Keras' BatchNormalization runs
``tf.nn.batch_normalization`` (element-wise ops on variables, not a
``FusedBatchNorm`` Grappler's remapper would fuse), so every BatchNorm is two
extra passes over its activation (float32 casts too under mixed bfloat16).

`fold_batch_norms(model)` returns a new model with the same outputs (equal
within float32 rounding) that shares every other layer with `model`; the
original is not modified. BatchNorms after a concatenation, an activation or
a shared tensor (DenseNet's pre-activation ``BN -> ReLU -> conv``) stay.
Works on functional models (nested functional models included) and on an
`EMLNet` (its extractor is folded, its decoder shared). Do not train the
folded model: its BatchNorm statistics are baked into kernels.
"""

import collections
import dataclasses

import keras
import numpy as np

_FOLDABLE = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")
_MIN_FUSED_EPSILON = 1.001e-5  # tf.compat.v1.nn.fused_batch_norm raises smaller epsilons to this


@keras.saving.register_keras_serializable(package="keras_emlnet")
class InferenceBatchNormalization(keras.layers.BatchNormalization):
    """A BatchNorm that `fold_batch_norms` keeps, run in inference as one fused op.

    Keras' BatchNormalization runs ``tf.nn.batch_normalization``: a Mul and an
    Add over the activation (plus the ReLU after it, which Grappler cannot
    fuse into them). On an image (4D, channels last) with TensorFlow this runs
    ``FusedBatchNormV3`` instead (one pass; oneDNN fuses a following ReLU), with
    the same statistics; training and every other case run the parent's call.
    """

    def call(self, inputs, training=None, mask=None):
        if (training or keras.backend.backend() != "tensorflow" or len(inputs.shape) != 4
                or self.axis not in (-1, 3) or self.epsilon < _MIN_FUSED_EPSILON):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones((channels,), tf.float32)
        offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros((channels,), tf.float32)
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            tf.cast(inputs, tf.float32), scale, offset, mean=tf.cast(self.moving_mean, tf.float32),
            variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon, is_training=False)
        return tf.cast(outputs, self.compute_dtype)


@dataclasses.dataclass
class FoldReport:
    """What `fold_batch_norms` did: `folded` BatchNorms, `kept` (name -> why not)."""

    folded: list = dataclasses.field(default_factory=list)
    kept: dict = dataclasses.field(default_factory=dict)
    merged_biases: int = 0

    def summary(self):
        reasons = collections.Counter(self.kept.values())
        kept = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
        return f"{len(self.folded)} BatchNorm layers folded into convolutions; kept {len(self.kept)}" + (
            f" ({kept})" if kept else ""
        )


def fold_batch_norms(model, report=None, *, copy=False):
    """A copy of `model` for inference with foldable BatchNorms folded (see the module docstring).

    The BatchNorms it keeps become `InferenceBatchNormalization` copies (one
    fused op), and biases summed by an Add move (see `_find_bias_merges`).

    Args:
        model: an `EMLNet`, a functional Keras model, or anything else
            (returned as is, or cloned with its weights when `copy`).
        report: optional FoldReport, filled in.
        copy: also copy the layers that are not folded (with their weights),
            so that the result shares nothing with `model` (e.g. to give it
            another dtype policy while `model` stays the float32 reference).

    Returns:
        The folded model (shares its other layers and weights with `model`
        unless `copy`).
    """
    from keras_emlnet.models.emlnet import EMLNet

    report = report if report is not None else FoldReport()
    if isinstance(model, EMLNet):
        extractor = fold_batch_norms(model.extractor, report, copy=copy)
        return EMLNet(
            extractor,
            fold_batch_norms(model.decoder, report, copy=copy),
            resize_mode=model.resize_mode,
            output_mode=model.output_mode,
            blur_sigma=model.blur_sigma,
            name=model.name,
        )
    if not _is_functional(model):
        return model  # nothing to fold (copy: only functional models are copied)

    pairs = {}  # id(BatchNorm) -> (BatchNorm, the convolution it folds into)
    _find_pairs(model, pairs, report)
    donors = {}  # id(conv keeping a bias) -> convs whose bias it takes over
    after_add = {}  # id(Add) -> convs whose biases move after it
    _find_bias_merges(model, pairs, donors, after_add)
    if not pairs and not donors and not after_add and not report.kept and not copy:
        return model
    if type(model) is not _functional_class():
        # A functional subclass (a SaliencyEncoder) whose constructor takes
        # more than (inputs, outputs): fold a plain functional view of its graph.
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    targets = {id(conv): bn for bn, conv in pairs.values()}
    dropped = {id(conv) for convs in [*donors.values(), *after_add.values()] for conv in convs}
    folded_layers = []  # (new conv, old conv, bn or None)
    copied_layers = []  # (copy, original)
    originals = {}  # id(layer in the clone) -> id(layer in `model`)

    def clone_function(layer):
        if id(layer) in targets or id(layer) in donors or id(layer) in dropped:
            config = layer.get_config()
            config["use_bias"] = id(layer) not in dropped
            config["bias_initializer"] = "zeros"
            new_conv = layer.__class__.from_config(config)
            folded_layers.append((new_conv, layer, targets.get(id(layer))))
            return new_conv
        if type(layer) is keras.layers.BatchNormalization and id(layer) not in pairs:
            duplicate = InferenceBatchNormalization.from_config(layer.get_config())
            copied_layers.append((duplicate, layer))
            return duplicate
        if copy and id(layer) not in pairs and not isinstance(layer, keras.layers.InputLayer):
            duplicate = layer.__class__.from_config(layer.get_config())
            copied_layers.append((duplicate, layer))
            originals[id(duplicate)] = id(layer)
            return duplicate
        return layer  # shared with `model`

    def call_function(layer, *args, **kwargs):  # `layer` is clone_function's result
        if id(layer) in pairs:
            return args[0]  # the folded BatchNorm is the identity now
        outputs = layer(*args, **kwargs)
        convs = after_add.get(originals.get(id(layer), id(layer)))
        if convs:
            bias = sum(_folded_weights(conv, targets.get(id(conv)))[1] for conv in convs)
            outputs = keras.layers.Rescaling(1.0, offset=bias.astype(np.float32), name=f"{layer.name}_bias")(outputs)
            report.merged_biases += len(convs)
        return outputs

    clone = keras.models.clone_model(
        model, clone_function=clone_function, call_function=call_function, recursive=True
    )
    for duplicate, layer in copied_layers:
        duplicate.set_weights(layer.get_weights())
    for new_conv, conv, bn in folded_layers:
        extra = [_folded_weights(donor, targets.get(id(donor)))[1] for donor in donors.get(id(conv), ())]
        _assign_folded(new_conv, conv, bn, extra)
        if bn is not None:
            report.folded.append(bn.name)
    report.merged_biases += sum(len(convs) for convs in donors.values())
    clone.trainable = False
    return clone


def _functional_class():
    from keras.src.models.functional import Functional

    return Functional


def _is_functional(model):
    return isinstance(model, _functional_class())


def _graph_counts(model):
    """(nodes, readers per tensor id, calls per layer id) of one functional model's own graph."""
    consumers = collections.Counter()
    nodes = [node for depth in model._nodes_by_depth.values() for node in depth]
    for node in nodes:
        for tensor in node.input_tensors:
            consumers[id(tensor)] += 1
    for tensor in model.outputs:
        consumers[id(tensor)] += 1
    calls = collections.Counter(id(node.operation) for node in nodes)
    return nodes, consumers, calls


def _find_pairs(model, pairs, report):
    """Fills `pairs` {id(BatchNorm): (BatchNorm, conv)} for every foldable BatchNorm, nested models included."""
    nodes, consumers, calls = _graph_counts(model)
    for node in nodes:
        layer = node.operation
        if _is_functional(layer):
            _find_pairs(layer, pairs, report)
            continue
        if type(layer).__name__ != "BatchNormalization":
            continue
        reason = _why_not_foldable(layer, node, consumers, calls)
        if reason:
            report.kept[layer.name] = reason
        else:
            pairs[id(layer)] = (layer, node.input_tensors[0]._keras_history.operation)


def _find_bias_merges(model, pairs, donors, after_add):
    """Moves the biases of convolutions that an Add sums (nested models included).

    NASNet's cells add two separable-conv branches, each ending in a folded
    BatchNorm's bias. Grappler's remapper then fuses Conv+BiasAdd+Add(+Relu)
    into the Add even where the Add's output is also read elsewhere (the
    reduction cells' ``add_1`` feeds an AvgPool and a ReLU) and fails for the
    whole graph ("Mutation::Apply error: fanout '...AvgPool' exist for missing
    node '...add_1.../Add'"), which leaves every Conv+BiasAdd+Relu unfused. So:
    an Add read once keeps only its last biased input's bias, which takes the
    others' sum (`donors` {id(keeper conv): [convs]}); an Add read more than
    once gets no bias on its inputs and one bias after it (`after_add`
    {id(Add): [convs]}, a `Rescaling` offset). Same outputs within rounding.
    """
    folded_bns = {id(bn): conv for bn, conv in pairs.values()}
    nodes, consumers, calls = _graph_counts(model)
    for node in nodes:
        layer = node.operation
        if _is_functional(layer):
            _find_bias_merges(layer, pairs, donors, after_add)
            continue
        if type(layer).__name__ != "Add" or calls[id(layer)] != 1:
            continue
        biased = []
        for tensor in node.input_tensors:
            if consumers[id(tensor)] != 1:
                continue
            producer = tensor._keras_history.operation
            if id(producer) in folded_bns:  # the BatchNorm disappears: its conv ends in the folded bias
                biased.append(folded_bns[id(producer)])
            elif (type(producer).__name__ in _FOLDABLE and producer.use_bias and calls[id(producer)] == 1
                  and producer.get_config().get("activation", "linear") == "linear"):
                biased.append(producer)
        if len(biased) < 2:
            continue
        if consumers[id(node.output_tensors[0])] == 1:
            donors[id(biased[-1])] = biased[:-1]
        else:
            after_add[id(layer)] = biased


def _why_not_foldable(bn, node, consumers, calls):
    if calls[id(bn)] != 1 or len(node.input_tensors) != 1:
        return "called more than once"
    tensor = node.input_tensors[0]
    if bn.axis not in (-1, len(tensor.shape) - 1) or len(tensor.shape) != 4:
        return "not on the channel axis of an image"
    producer = tensor._keras_history.operation
    if type(producer).__name__ not in _FOLDABLE:
        return f"after {type(producer).__name__}"
    if calls[id(producer)] != 1:
        return "after a shared convolution"
    if producer.get_config().get("activation", "linear") != "linear":
        return "after a convolution with an activation"
    if producer.data_format != "channels_last":
        return "after a channels_first convolution"
    if consumers[id(tensor)] != 1:
        return "convolution output also read elsewhere"
    return None


def _folded_weights(conv, bn):
    """({kernel name: float64 kernel}, float64 bias) of `conv` followed by `bn` (or alone when None)."""
    kind = type(conv).__name__
    channels = conv.filters if kind != "DepthwiseConv2D" else conv.kernel.shape[2] * conv.kernel.shape[3]
    old_bias = np.asarray(conv.bias.numpy(), np.float64) if conv.use_bias else np.zeros(channels)
    if kind == "SeparableConv2D":
        kernels = {"depthwise_kernel": np.asarray(conv.depthwise_kernel.numpy(), np.float64),
                   "pointwise_kernel": np.asarray(conv.pointwise_kernel.numpy(), np.float64)}
    else:
        kernels = {"kernel": np.asarray(conv.kernel.numpy(), np.float64)}
    if bn is None:
        return kernels, old_bias
    mean = np.asarray(bn.moving_mean.numpy(), np.float64)
    variance = np.asarray(bn.moving_variance.numpy(), np.float64)
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.scale else np.ones_like(mean)
    beta = np.asarray(bn.beta.numpy(), np.float64) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    if kind == "SeparableConv2D":
        kernels["pointwise_kernel"] = kernels["pointwise_kernel"] * scale
    elif kind == "DepthwiseConv2D":
        kernel = kernels["kernel"]
        kernels["kernel"] = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        kernels["kernel"] = kernels["kernel"] * scale
    return kernels, (old_bias - mean) * scale + beta


def _assign_folded(copy, conv, bn, extra_biases=()):
    """Sets `copy`'s weights to `conv` followed by `bn` (computed in float64), plus `extra_biases`."""
    kernels, bias = _folded_weights(conv, bn)
    for name, kernel in kernels.items():
        getattr(copy, name).assign(kernel.astype(np.float32))
    if copy.use_bias:
        copy.bias.assign((bias + sum(extra_biases)).astype(np.float32))
