"""The frozen multi-layer feature extractor over trained encoders (paper §3.3).

After each encoder is trained on its own, EML-NET freezes them and taps several
of their layers (NASNet: both reduction cells and the last layer; DenseNet-161:
blocks 1-3 and the last layer). `build_feature_extractor` joins any number of
trained encoders into ONE functional multi-output model whose outputs are a
dict {tap layer name: feature map}, e.g. `nasnet_tap_reduce6` (B, h, w, 1344).

Each encoder's tap sub-graph is wrapped as a nested model `<prefix>_features`
(its layers keep their names inside it, so two backbones that both name a layer
`conv1` do not clash) and called on one shared image input.

Frozen means three things, each enforced here or by the caller:
- the weights are not trainable (`trainable=False` on every nested model);
- BatchNorm runs in inference mode: Keras 3 BatchNormalization only uses batch
  statistics when `training and self.trainable`, so a frozen BN always uses its
  moving statistics. `EMLNet` also always calls the extractor with
  `training=False`, because a functional model forwards the *caller's*
  `training` flag to every inner layer (overriding any flag fixed when the
  graph was built), which would switch on e.g. Dropout in a custom backbone;
- no gradient is ever computed through it: every output passes through
  `StopGradient`, so backpropagation from the decoder stops at the taps.
"""

from collections.abc import Sequence

import keras

from keras_emlnet.models import taps as taps_lib
from keras_emlnet.models.encoder import SaliencyEncoder


@keras.saving.register_keras_serializable(package="keras_emlnet")
class StopGradient(keras.layers.Layer):
    """Identity in the forward pass; blocks gradients in the backward pass.

    A layer (not a bare `keras.ops.stop_gradient` call) so that it has a name
    from the encoder's prefix and survives `.keras` save/load.
    """

    def call(self, inputs):
        return keras.ops.stop_gradient(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


def encoder_prefix(encoder):
    """Returns the prefix shared by all tap layers of `encoder`.

    A `SaliencyEncoder` carries it (`tap_prefix`); any other model (a plain
    functional encoder, e.g. one saved before encoders carried their
    metadata) is read from its tap layers' names.

    Raises:
        ValueError: if a plain model has no taps or its taps mix prefixes.
    """
    if isinstance(encoder, SaliencyEncoder):
        return encoder.tap_prefix
    return taps_lib.find_tap_prefix(encoder)


def build_feature_extractor(
    encoders: Sequence[keras.Model], *, name: str = "feature_extractor", dtype_policy: str | None = None
) -> keras.Model:
    """Builds one frozen functional model tapping every encoder in `encoders`.

    Args:
        encoders: a non-empty sequence of trained encoders (models built by
            `keras_emlnet.build_encoder`, or loaded from their `.keras` files).
            They must all take the same static input shape (H, W, 3) and have
            distinct prefixes (two `nasnet` encoders cannot be combined: their
            tap names would collide; build one with another prefix, e.g.
            `build_encoder("nasnet", prefix="nasnet_b")`).
        name: the name of the returned model.
        dtype_policy: None to run each tap sub-graph in the encoder's own
            layers and dtype policies (shared with the encoder); or a Keras
            policy name (e.g. "mixed_bfloat16") to run copies of the tap
            sub-graphs, with the same weights, in that policy. Encoders loaded
            from `.keras` files keep the float32 policy they were saved with,
            whatever the global policy; this is how a mixed-precision run
            gets a mixed-precision extractor.

    Returns:
        A `keras.Model` taking float RGB 0-255 images (B, H, W, 3) and returning
        a dict {tap layer name: (B, h_i, w_i, c_i) feature map}, encoders in
        the given order and each encoder's taps in graph order. Its weights
        are not trainable and its outputs carry no gradient.

    Raises:
        ValueError: on an empty list, an encoder without taps, repeated
            prefixes, or input shapes that differ or are not static.
    """
    encoders = list(encoders)
    if not encoders:
        raise ValueError("build_feature_extractor needs at least one encoder, got none")
    input_shape = _common_input_shape(encoders)
    images = keras.Input(shape=input_shape, name="images")

    outputs = {}
    seen_prefixes = {}
    for encoder in encoders:
        prefix = encoder_prefix(encoder)
        if prefix in seen_prefixes:
            raise ValueError(
                f"encoders {seen_prefixes[prefix]!r} and {encoder.name!r} both have the prefix {prefix!r}; "
                "their tap layers would collide. Build the second one with another prefix, e.g. "
                f"build_encoder(..., prefix='{prefix}_b')"
            )
        seen_prefixes[prefix] = encoder.name
        tap_layers = taps_lib.find_tap_layers(encoder)
        features = keras.Model(
            encoder.input,
            [layer.output for layer in tap_layers.values()],
            name=f"{prefix}_features",
        )
        if dtype_policy is not None:
            features = _copy_with_policy(features, dtype_policy)
        features.trainable = False
        # training=False documents the intent; what actually keeps BN in
        # inference mode is trainable=False (see the module docstring).
        tapped = features(images, training=False)
        if not isinstance(tapped, (list, tuple)):
            tapped = [tapped]
        for tap_name, tensor in zip(tap_layers, tapped):
            _, tap = taps_lib.parse_tap_layer_name(tap_name)
            outputs[tap_name] = StopGradient(name=f"{prefix}_frozen_{tap}")(tensor)

    extractor = keras.Model(images, outputs, name=name)
    extractor.trainable = False
    return extractor


def tap_shapes(extractor):
    """Returns {tap name: (h, w, c)} for the outputs of a feature extractor."""
    return {tap_name: tuple(tensor.shape[1:]) for tap_name, tensor in extractor.output.items()}


def _copy_with_policy(model, policy_name):
    """Rebuilds `model` with every float32 layer policy replaced by `policy_name`."""

    def convert(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and node.get("config", {}).get("name") == "float32":
                return {**node, "config": {**node["config"], "name": policy_name}}
            return {key: convert(value) for key, value in node.items()}
        if isinstance(node, list):
            return [convert(value) for value in node]
        return node

    copy = keras.saving.deserialize_keras_object(convert(keras.saving.serialize_keras_object(model)))
    copy.set_weights(model.get_weights())
    return copy


def _common_input_shape(encoders):
    shapes = {encoder.name: tuple(encoder.input_shape[1:]) for encoder in encoders}
    distinct = set(shapes.values())
    if len(distinct) != 1:
        raise ValueError(f"encoders must share one input shape, got {shapes}")
    shape = distinct.pop()
    if len(shape) != 3 or shape[-1] != 3 or any(dim is None for dim in shape):
        raise ValueError(
            f"encoders need a static RGB input shape (H, W, 3) to be combined, got {shapes}; "
            "build them with build_encoder(..., input_size=(H, W))"
        )
    return shape
