"""Registry of backbones an EML-NET encoder can be built on.

A `BackboneSpec` says everything `build_encoder` needs about one pretrained
CNN: how to construct it (without classifier), the input shape it demands,
the preprocessing its weights expect, which of its layers the decoder taps,
and where its weights come from. Adding a backbone is one entry in
`BACKBONES` (see WORKSPACE.md, "How to add a backbone").

Weights on an offline machine:
- `nasnet` / `resnet50` with `weights="imagenet"` use Keras's own download
  and cache (`$KERAS_HOME/models/`, default `~/.keras/models/`). Offline, copy
  the keras-applications release files there under Keras's cache names:
  `nasnet/NASNet-large-no-top.h5` as `nasnet_large_no_top.h5` (MD5
  d81d89dc07e6e56530c4e77faddd61b5) and
  `resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5` under its own
  name (MD5 4d473c1dd8becc155b73f8504c6f6626) — Keras checks the hash and
  re-downloads on a mismatch — or pass either file as `weights=PATH`.
- `densenet161` with `weights="places365"` reads
  `$KERAS_HOME/models/densenet161_places365.weights.h5`, made from the
  official CSAIL checkpoint with
  `python -m keras_emlnet.convert_places365 densenet161_places365.pth.tar OUT`.
"""

import dataclasses
import functools
import os
from typing import Callable, Mapping, Optional

import h5py
import keras

from keras_emlnet.models import densenet161

PLACES365_WEIGHTS_FILE = "densenet161_places365.weights.h5"


@dataclasses.dataclass(frozen=True)
class TapSpec:
    """One tapped feature map of a backbone.

    Attributes:
        name: short tap name; the encoder's marker layer is
            `tap_layer_name(prefix, name)`.
        layer: name of the backbone layer whose output is tapped; None taps
            the backbone's output (NASNet's final ReLU has no stable name).
        channels: channels of the tapped map.
        stride: input size / map size (approximate where the backbone uses
            valid padding).
    """

    name: str
    layer: Optional[str]
    channels: int
    stride: int


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone inside an encoder.

    Attributes:
        name: registry name; also the default layer-name prefix of encoders.
        constructor: `constructor(input_shape, weights)` returns a functional
            keras.Model without classifier taking preprocessed inputs of
            `input_shape`; `weights` is None (random) or one of
            `weight_sources`' keys.
        preprocessing: `BackbonePreprocessing` mode its weights expect
            ("tf", "torch", "caffe", "none").
        taps: the tapped feature maps, shallow to deep; the last is
            conventionally the backbone output (`layer=None`).
        final_channels: channels of the backbone output (the head's 1x1 conv
            has this many weights).
        requires_static_input_shape: True when a None height/width builds a
            different network (NASNet: its pretrained weights do not fit).
        min_input_size: smallest height/width the constructor accepts.
        weight_sources: named weights -> where they come from (docs/errors).
        default_weights: the source training starts from when none is named
            (the paper's pretrained weights); None: random initialisation.
    """

    name: str
    constructor: Callable[..., keras.Model]
    preprocessing: str
    taps: tuple
    final_channels: int
    requires_static_input_shape: bool = False
    min_input_size: int = 32
    weight_sources: Mapping[str, str] = dataclasses.field(default_factory=dict)
    default_weights: Optional[str] = None

    def tap(self, name):
        """Returns the TapSpec called `name`."""
        for tap in self.taps:
            if tap.name == name:
                return tap
        raise KeyError(f"backbone {self.name!r} has no tap {name!r}; taps: {[t.name for t in self.taps]}")


def _keras_application(application, imagenet_file, input_shape, weights):
    """`application` (a keras.applications model) without classifier; a constructor once partially applied.

    Raises:
        FileNotFoundError: ImageNet weights neither in Keras's cache nor
            downloadable (names the file to copy there).
    """
    try:
        return application(include_top=False, weights=weights, input_shape=tuple(input_shape), pooling=None)
    except Exception as error:  # Keras's download raises a bare Exception ("URL fetch failure ...")
        path = keras_models_path(imagenet_file)
        if weights != "imagenet" or os.path.isfile(path):
            raise
        raise FileNotFoundError(
            f"{application.__name__} ImageNet weights are not at {path} and could not be downloaded ({error}). "
            f"Copy the keras-applications release file there under that name (README, 'Offline weights'), "
            "pass a weights file (--weights PATH), or train from random initialisation (--weights none)."
        ) from error


def _keras_application_spec(name, application, *, imagenet_file, **fields):
    """A BackboneSpec over a keras.applications model whose ImageNet weights come through Keras's cache."""
    return BackboneSpec(
        name=name,
        constructor=functools.partial(_keras_application, application, imagenet_file),
        weight_sources={"imagenet": f"Keras cache $KERAS_HOME/models/{imagenet_file} (downloaded when absent)"},
        default_weights="imagenet",
        **fields,
    )


def keras_models_path(file_name):
    """`$KERAS_HOME/models/<file_name>` (default `~/.keras/models/`): Keras's weight cache."""
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(keras_home, "models", file_name)


def places365_weights_path():
    """Where `weights="places365"` looks for the converted DenseNet-161 weights."""
    return keras_models_path(PLACES365_WEIGHTS_FILE)


def _densenet161(input_shape, weights):
    if weights not in (None, "places365"):
        raise ValueError(f"densenet161 has no named weights {weights!r}; use 'places365' or a path")
    path = places365_weights_path()
    if weights == "places365" and not os.path.isfile(path):  # checked before the slow build
        raise FileNotFoundError(
            f"DenseNet-161 Places365 weights not found at {path}. They cannot be downloaded "
            "automatically: get densenet161_places365.pth.tar from the CSAIL places365 "
            "release, then run `python -m keras_emlnet.convert_places365 "
            f"densenet161_places365.pth.tar {path}` (or pass weights=PATH to a converted file)."
        )
    model = densenet161.build_densenet161(tuple(input_shape))
    if weights == "places365":
        load_backbone_weights(model, path, "densenet161")
    return model


BACKBONES = {
    # keras-applications names the file nasnet/NASNet-large-no-top.h5 and caches it as nasnet_large_no_top.h5.
    "nasnet": _keras_application_spec(
        "nasnet", keras.applications.NASNetLarge, imagenet_file="nasnet_large_no_top.h5", preprocessing="tf",
        taps=(
            TapSpec("reduce6", "reduction_concat_reduce_6", 1344, 16),
            TapSpec("reduce12", "reduction_concat_reduce_12", 2688, 32),
            TapSpec("final", None, 4032, 32),
        ),
        final_channels=4032, requires_static_input_shape=True, min_input_size=32,
    ),
    "densenet161": BackboneSpec(
        name="densenet161",
        constructor=_densenet161,
        preprocessing="torch",
        taps=(
            TapSpec("block1", densenet161.dense_block_output_name(1), 384, 4),
            TapSpec("block2", densenet161.dense_block_output_name(2), 768, 8),
            TapSpec("block3", densenet161.dense_block_output_name(3), 2112, 16),
            TapSpec("final", None, 2208, 32),
        ),
        final_channels=2208,
        min_input_size=32,
        weight_sources={
            "places365": f"converted CSAIL checkpoint at $KERAS_HOME/models/{PLACES365_WEIGHTS_FILE}",
        },
        default_weights="places365",
    ),
    "resnet50": _keras_application_spec(
        "resnet50", keras.applications.ResNet50, imagenet_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        preprocessing="caffe",
        taps=(
            TapSpec("stage2", "conv2_block3_out", 256, 4),
            TapSpec("stage3", "conv3_block4_out", 512, 8),
            TapSpec("stage4", "conv4_block6_out", 1024, 16),
            TapSpec("final", None, 2048, 32),
        ),
        final_channels=2048, min_input_size=32,
    ),
}


def load_backbone_weights(model, path, backbone_name):
    """Loads a weights file into a bare backbone; errors name the file.

    Accepts Keras 3 `.weights.h5` files and keras.applications' legacy `.h5`
    files (which Keras matches layer by layer in order).

    Raises:
        ValueError: the file does not fit the backbone.
    """
    path = os.fspath(path)
    try:
        model.load_weights(path)
    except Exception as error:  # Keras raises several types; name the file in one.
        raise ValueError(f"cannot load weights file {path} into backbone {backbone_name!r}: {error}") from error
    if path.endswith(".weights.h5"):
        # Keras ignores extra entries in a .weights.h5 file, so a file saved from a
        # larger model would load "successfully" into part of this one.
        stored = _count_stored_variables(path)
        if stored != len(model.weights):
            raise ValueError(
                f"weights file {path} holds {stored} variables but backbone {backbone_name!r} has "
                f"{len(model.weights)}: it was saved from a different model"
            )


def _count_stored_variables(path):
    count = 0

    def visit(name, item):
        nonlocal count
        count += isinstance(item, h5py.Dataset) and "/vars/" in f"/{name}"

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return count


def get_backbone(backbone: str | BackboneSpec) -> BackboneSpec:
    """Returns the BackboneSpec for a registry name, or `backbone` if it is a spec."""
    if isinstance(backbone, BackboneSpec):
        return backbone
    try:
        return BACKBONES[backbone]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown backbone {backbone!r}; registered: {sorted(BACKBONES)} (or pass a BackboneSpec)"
        ) from None
