"""EML-NET encoder: a pretrained backbone with a one-map saliency head (§3.1–3.2).

    image (RGB 0-255) → backbone preprocessing → backbone (tap markers inside)
      → 1×1 conv to one map, no bias → ReLU → bilinear resize to the input size

Backbone layers are copied into the encoder's own functional graph with the
encoder prefix (`<prefix>_<layer>`), so two encoders never clash on layer
names when the feature extractor joins them, and every tap is an Identity
layer named `tap_layer_name(prefix, tap)` placed on the path itself (a
dangling marker would not be part of the model).

The encoder is a `SaliencyEncoder`: a functional model that also carries its
metadata (backbone name, tap prefix, input size), which survive `.keras`
save/load, so the training stages read them from the loaded model.
"""

import os
import warnings

import keras

from keras_emlnet.models.backbones import BackboneSpec, get_backbone, load_backbone_weights
from keras_emlnet.models.preprocessing import BackbonePreprocessing
from keras_emlnet.models.resizing import BilinearResizeLike
from keras_emlnet.models.taps import find_tap_prefix, tap_layer_name


@keras.saving.register_keras_serializable(package="keras_emlnet")
class SaliencyEncoder(keras.Model):
    """A saliency encoder: a functional model that knows what it was built from.

    `build_encoder` makes one. Like a keras-hub `Backbone`, it is a functional
    subclass, but its config stores the functional graph itself (the copied
    backbone layers, as a plain functional model would) rather than the
    arguments of `build_encoder`: a `.keras` file then rebuilds the same
    graph for any `BackboneSpec`, registered or not, and without downloading
    or converting pretrained weights. The metadata are extra config entries.

    Args:
        inputs: the image input (B, H, W, 3), RGB 0-255.
        outputs: the saliency map (B, H, W, 1).
        name: the model name (`<tap_prefix>_encoder` from `build_encoder`).
        backbone: name of the `BackboneSpec` the encoder was built on.
        tap_prefix: the prefix of its layer names and tap layers
            (`tap_layer_name(tap_prefix, tap)`); checked against the graph.
        **kwargs: base model arguments (trainable, ...).

    Raises:
        ValueError: the graph's tap layers do not share the prefix `tap_prefix`.
    """

    def __init__(self, inputs, outputs, name=None, *, backbone, tap_prefix, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        found = find_tap_prefix(self)
        if found != tap_prefix:
            raise ValueError(f"encoder {self.name!r} has tap prefix {found!r}, not the tap_prefix {tap_prefix!r}")
        self._backbone_name = str(backbone)
        self._tap_prefix = str(tap_prefix)

    @property
    def backbone(self):
        """Name of the backbone the encoder was built on (e.g. "nasnet")."""
        return self._backbone_name

    @property
    def tap_prefix(self):
        """The prefix of the encoder's tap layers, `<tap_prefix>_tap_<tap>`."""
        return self._tap_prefix

    @property
    def input_size(self):
        """(H, W) of the images the encoder takes (None where dynamic)."""
        return tuple(self.input_shape[1:3])

    def get_config(self):
        config = super().get_config()  # the functional graph: layers, inputs, outputs
        config.update({"backbone": self.backbone, "tap_prefix": self.tap_prefix, "input_size": list(self.input_size)})
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        # Derived from the graph's input; stored for readers of the config.
        input_size = config.pop("input_size", None)
        encoder = super().from_config(config, custom_objects=custom_objects)
        if input_size is not None and tuple(input_size) != encoder.input_size:
            raise ValueError(
                f"encoder {encoder.name!r}: config input_size {tuple(input_size)} differs from its "
                f"input's {encoder.input_size}"
            )
        return encoder


def build_encoder(
    backbone: str | BackboneSpec,
    *,
    weights: str | os.PathLike | None = None,
    input_size: tuple[int, int] = (480, 640),
    prefix: str | None = None,
    seed: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
) -> SaliencyEncoder:
    """Builds a saliency encoder over one backbone.

    Args:
        backbone: registry name ("nasnet", "densenet161", "resnet50") or a
            `BackboneSpec`.
        weights: None (random initialisation); a named source of the backbone
            (`spec.weight_sources`: "imagenet" for nasnet/resnet50 through
            Keras's download cache, "places365" for densenet161); or the path
            of a weights file for the bare backbone (a `.weights.h5` saved from
            the spec's constructor or written by `convert_places365`, or a
            keras.applications `.h5` file such as `NASNet-large-no-top.h5`).
            A trained encoder is reloaded with `keras_emlnet.load_model`.
        input_size: (H, W) of the RGB 0-255 input (the model input size).
        prefix: layer-name prefix; defaults to the backbone's name. The model
            is named `<prefix>_encoder`.
        seed: seed of the head's initializer (None: unseeded).
        input_shape: deprecated spelling of `input_size` as (H, W, 3).

    Returns:
        A `SaliencyEncoder` (B, H, W, 3) → (B, H, W, 1) float32 ReLU map.

    Raises:
        ValueError: bad input shape, unknown weights name, or a weights file
            that does not fit (the message names the file).
        FileNotFoundError: `weights` names a file that does not exist.
    """
    spec = get_backbone(backbone)
    prefix = prefix or spec.name
    if input_shape is not None:
        warnings.warn("build_encoder(input_shape=(H, W, 3)) is deprecated: pass input_size=(H, W)",
                      DeprecationWarning, stacklevel=2)
    else:
        if len(tuple(input_size)) != 2:
            raise ValueError(f"input_size must be (H, W), got {input_size}")
        input_shape = (*tuple(input_size), 3)
    input_shape = _check_input_shape(spec, input_shape)
    source = _build_backbone(spec, weights, input_shape)

    inputs = keras.Input(shape=input_shape, name=f"{prefix}_image")
    x = BackbonePreprocessing(spec.preprocessing, name=f"{prefix}_preprocessing")(inputs)
    features = _graft_backbone(source, x, spec, prefix)
    del source

    x = keras.layers.Conv2D(
        1,
        1,
        use_bias=False,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        name=f"{prefix}_head_conv",
    )(features)
    x = keras.layers.ReLU(name=f"{prefix}_head_relu")(x)
    # float32 output whatever the global policy: losses and metrics need it.
    outputs = BilinearResizeLike(name=f"{prefix}_head_upsample", dtype="float32")(x, inputs)
    return SaliencyEncoder(inputs, outputs, name=f"{prefix}_encoder", backbone=spec.name, tap_prefix=prefix)


def _check_input_shape(spec, input_shape):
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(f"input_shape must be (H, W, 3) for an RGB image, got {input_shape}")
    height, width = input_shape[:2]
    if spec.requires_static_input_shape and (height is None or width is None):
        raise ValueError(
            f"backbone {spec.name!r} needs a static input shape (a None height/width builds a "
            f"different network that its pretrained weights do not fit), got {input_shape}"
        )
    for size in (height, width):
        if size is not None and size < spec.min_input_size:
            raise ValueError(
                f"backbone {spec.name!r} needs height and width >= {spec.min_input_size}, got {input_shape}"
            )
    return input_shape


def _build_backbone(spec, weights, input_shape):
    if weights is None or (isinstance(weights, str) and weights in spec.weight_sources):
        return spec.constructor(input_shape, weights)
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"weights {path!r} for backbone {spec.name!r} is neither a named source "
            f"({sorted(spec.weight_sources)}) nor an existing file"
        )
    model = spec.constructor(input_shape, None)
    load_backbone_weights(model, path, spec.name)
    return model


def _graft_backbone(source, x, spec, prefix):
    """Rebuilds `source` on tensor `x` with prefixed copies of its layers and tap markers."""
    tapped = {tap.layer: tap.name for tap in spec.taps if tap.layer is not None}
    missing = sorted(name for name in tapped if name not in {layer.name for layer in source.layers})
    if missing:
        raise ValueError(f"backbone {spec.name!r} has no layers {missing} named in its taps")

    originals = {}  # id(copy) -> (copy, source layer)
    outputs = {}  # source layer name -> output of its copy (tap marker included)

    def copy_layer(layer):
        config = layer.get_config()
        config["name"] = f"{prefix}_{layer.name}"
        copy = layer.__class__.from_config(config)
        originals[id(copy)] = (copy, layer)
        return copy

    def call_and_mark(layer, *args, **kwargs):
        output = layer(*args, **kwargs)
        name = originals[id(layer)][1].name
        if name in tapped:
            output = keras.layers.Identity(name=tap_layer_name(prefix, tapped[name]))(output)
        outputs[name] = output
        return output

    # clone_model walks the source graph calling our copies on `x`; the model it
    # returns is discarded (its graph is re-rooted on a fresh Input), the
    # tensors collected in `outputs` are what join the encoder's graph.
    keras.models.clone_model(source, input_tensors=x, clone_function=copy_layer, call_function=call_and_mark)
    for copy, original in originals.values():
        if original.weights:
            copy.set_weights(original.get_weights())
    output = outputs[source.output._keras_history.operation.name]
    for tap in spec.taps:
        if tap.layer is None:
            output = keras.layers.Identity(name=tap_layer_name(prefix, tap.name))(output)
    return output
