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

import numpy as np

_FOLDABLE = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")


@dataclasses.dataclass
class FoldReport:
    """What `fold_batch_norms` did: `folded` BatchNorms, `kept` (name -> why not)."""

    folded: list = dataclasses.field(default_factory=list)
    kept: dict = dataclasses.field(default_factory=dict)

    def summary(self):
        reasons = collections.Counter(self.kept.values())
        kept = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
        return f"{len(self.folded)} BatchNorm layers folded into convolutions; kept {len(self.kept)}" + (
            f" ({kept})" if kept else ""
        )


def fold_batch_norms(model, report=None, *, copy=False):
    """A copy of `model` for inference with foldable BatchNorms folded (see the module docstring).

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
    import keras

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
    if not pairs and not copy:
        return model
    if type(model) is not _functional_class():
        # A functional subclass (a SaliencyEncoder) whose constructor takes
        # more than (inputs, outputs): fold a plain functional view of its graph.
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    targets = {id(conv): bn for bn, conv in pairs.values()}
    folded_layers = []  # (new conv, old conv, bn)
    copied_layers = []  # (copy, original)

    def clone_function(layer):
        if id(layer) in targets:
            config = layer.get_config()
            config["use_bias"] = True
            config["bias_initializer"] = "zeros"
            new_conv = layer.__class__.from_config(config)
            folded_layers.append((new_conv, layer, targets[id(layer)]))
            return new_conv
        if copy and not isinstance(layer, keras.layers.InputLayer):
            duplicate = layer.__class__.from_config(layer.get_config())
            copied_layers.append((duplicate, layer))
            return duplicate
        return layer  # shared with `model`

    def call_function(layer, *args, **kwargs):
        if id(layer) in pairs:
            return args[0]  # the folded BatchNorm is the identity now
        return layer(*args, **kwargs)

    clone = keras.models.clone_model(
        model, clone_function=clone_function, call_function=call_function, recursive=True
    )
    for duplicate, layer in copied_layers:
        duplicate.set_weights(layer.get_weights())
    for new_conv, conv, bn in folded_layers:
        _assign_folded(new_conv, conv, bn)
        report.folded.append(bn.name)
    clone.trainable = False
    return clone


def _functional_class():
    from keras.src.models.functional import Functional

    return Functional


def _is_functional(model):
    return isinstance(model, _functional_class())


def _find_pairs(model, pairs, report):
    """Fills `pairs` {id(BatchNorm): (BatchNorm, conv)} for every foldable BatchNorm, nested models included."""
    consumers = collections.Counter()
    nodes = [node for depth in model._nodes_by_depth.values() for node in depth]
    for node in nodes:
        for tensor in node.input_tensors:
            consumers[id(tensor)] += 1
    for tensor in model.outputs:
        consumers[id(tensor)] += 1
    calls = collections.Counter(id(node.operation) for node in nodes)
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


def _assign_folded(copy, conv, bn):
    """Sets `copy`'s weights to `conv` followed by `bn` (computed in float64)."""
    mean = np.asarray(bn.moving_mean.numpy(), np.float64)
    variance = np.asarray(bn.moving_variance.numpy(), np.float64)
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.scale else np.ones_like(mean)
    beta = np.asarray(bn.beta.numpy(), np.float64) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    old_bias = np.asarray(conv.bias.numpy(), np.float64) if conv.use_bias else np.zeros_like(mean)
    bias = (old_bias - mean) * scale + beta
    kind = type(conv).__name__
    if kind == "SeparableConv2D":
        copy.depthwise_kernel.assign(conv.depthwise_kernel.numpy())
        pointwise = np.asarray(conv.pointwise_kernel.numpy(), np.float64) * scale
        copy.pointwise_kernel.assign(pointwise.astype(np.float32))
    elif kind == "DepthwiseConv2D":
        kernel = np.asarray(conv.kernel.numpy(), np.float64)
        copy.kernel.assign((kernel * scale.reshape(kernel.shape[2], kernel.shape[3])).astype(np.float32))
    else:
        copy.kernel.assign((np.asarray(conv.kernel.numpy(), np.float64) * scale).astype(np.float32))
    copy.bias.assign(bias.astype(np.float32))
