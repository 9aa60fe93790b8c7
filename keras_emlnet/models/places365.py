"""Converts the CSAIL Places365 DenseNet-161 PyTorch checkpoint to Keras weights.

`convert_places365` is what `python -m keras_emlnet.convert_places365
CHECKPOINT OUT` runs. The official `densenet161_places365.pth.tar`
(CSAILVision/places365) is a dict `{'epoch', 'arch', 'state_dict',
'best_prec1'}` written by the training script from a `torch.nn.DataParallel`
model: every key starts with `module.`, the dense layers use the pre-0.4
dotted names (`norm.1`, `conv.1`, `norm.2`, `conv.2`, which torchvision now
spells `norm1` ...), BatchNorm has no `num_batches_tracked`, and the file uses
torch's legacy (non-zip) format. It is read with
`torch.load(weights_only=True)`, which unpickles tensors and plain containers
only and never runs code from the file; newer-style
checkpoints (bare state dicts, `norm1` names, zip format) are accepted too.

The output is a `.weights.h5` for `densenet161.build_densenet161()`, usable
as `build_encoder("densenet161", weights=OUT)`, or as `weights="places365"`
once placed at `backbones.places365_weights_path()`.
"""

import re

import numpy as np

from keras_emlnet.atomic_files import atomic_path
from keras_emlnet.models import densenet161
from keras_emlnet.models import torch_checkpoints

# torchvision's old dense-layer names: "denselayer3.norm.1.weight" -> "denselayer3.norm1.weight".
_DOTTED_NAME = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
_DATA_PARALLEL_PREFIX = torch_checkpoints.DATA_PARALLEL_PREFIX
_IGNORED_KEYS = ("classifier.weight", "classifier.bias")  # the 365-way classifier is not used
_BN_FIELDS = torch_checkpoints.BN_FIELDS


def keras_to_torch_names():
    """Returns {Keras layer name: torch module path} for every weighted DenseNet-161 layer."""
    names = {"conv1_conv": "features.conv0", "conv1_bn": "features.norm0", "bn": "features.norm5"}
    for block, num_layers in enumerate(densenet161.BLOCKS, start=1):
        label = densenet161.BLOCK_LABELS[block - 1]
        for layer in range(1, num_layers + 1):
            torch_layer = f"features.denseblock{block}.denselayer{layer}"
            keras_layer = f"{label}_block{layer}"
            names[f"{keras_layer}_0_bn"] = f"{torch_layer}.norm1"
            names[f"{keras_layer}_1_conv"] = f"{torch_layer}.conv1"
            names[f"{keras_layer}_1_bn"] = f"{torch_layer}.norm2"
            names[f"{keras_layer}_2_conv"] = f"{torch_layer}.conv2"
        if block <= len(densenet161.TRANSITION_LABELS):
            label = densenet161.TRANSITION_LABELS[block - 1]
            names[f"{label}_bn"] = f"features.transition{block}.norm"
            names[f"{label}_conv"] = f"features.transition{block}.conv"
    return names


def _torch_keys(keras_name, torch_name):
    if keras_name.endswith("_conv"):
        return [f"{torch_name}.weight"]
    return [f"{torch_name}.{field}" for field in _BN_FIELDS]


def normalize_state_dict(state_dict):
    """Strips `module.`, renames dotted dense-layer keys, drops `num_batches_tracked`; values → NumPy."""
    normalized = {}
    for key, value in state_dict.items():
        if key.startswith(_DATA_PARALLEL_PREFIX):
            key = key[len(_DATA_PARALLEL_PREFIX) :]
        if key.endswith("num_batches_tracked"):
            continue  # BatchNorm bookkeeping, absent from old checkpoints
        match = _DOTTED_NAME.match(key)
        if match:
            key = f"{match.group(1)}{match.group(2)}"
        normalized[key] = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    return normalized


def load_places365_checkpoint(path):
    """Reads a Places365 DenseNet checkpoint (no code execution) → normalised {key: ndarray}.

    Raises:
        ImportError: torch is not installed.
        ValueError: the file cannot be read as a checkpoint (the message names it).
    """
    return normalize_state_dict(torch_checkpoints.read_state_dict(path))


def state_dict_to_layer_weights(state_dict, source="checkpoint"):
    """Maps a normalised DenseNet-161 state dict to {Keras layer name: [arrays]}.

    Conv kernels go from torch (out, in, kh, kw) to Keras (kh, kw, in, out);
    BatchNorm weight, bias, running_mean, running_var become gamma, beta,
    moving_mean, moving_variance.

    Raises:
        ValueError: keys missing or unexpected (both listed), or a shape that
            does not fit, naming `source`.
    """
    names = keras_to_torch_names()
    expected = {key for keras_name, torch_name in names.items() for key in _torch_keys(keras_name, torch_name)}
    present = set(state_dict)
    missing = expected - present
    unexpected = present - expected - set(_IGNORED_KEYS)
    if missing or unexpected:
        raise ValueError(
            f"{source} does not match DenseNet-161: missing keys {torch_checkpoints.describe_keys(missing)}; "
            f"unexpected keys {torch_checkpoints.describe_keys(unexpected)}"
        )
    weights = {}
    for keras_name, torch_name in names.items():
        arrays = [state_dict[key].astype(np.float32) for key in _torch_keys(keras_name, torch_name)]
        if keras_name.endswith("_conv"):
            if arrays[0].ndim != 4:
                raise ValueError(f"{source}: {torch_name}.weight has shape {arrays[0].shape}, expected 4-D")
            arrays = [np.transpose(arrays[0], (2, 3, 1, 0))]
        weights[keras_name] = arrays
    return weights


def set_layer_weights(model, layer_weights, source="checkpoint"):
    """Assigns {layer name: arrays} to `model`'s layers, checking every shape."""
    for name, arrays in layer_weights.items():
        layer = model.get_layer(name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if shapes != [array.shape for array in arrays]:
            raise ValueError(
                f"{source}: layer {name} expects shapes {shapes}, checkpoint has {[a.shape for a in arrays]}"
            )
        layer.set_weights(arrays)


def convert_places365(checkpoint_path, output_path):
    """Converts `checkpoint_path` and writes `output_path` (.weights.h5) atomically.

    Returns:
        The DenseNet-161 keras.Model holding the converted weights.
    """
    if not str(output_path).endswith(".weights.h5"):
        raise ValueError(f"output file must end in .weights.h5, got {output_path}")
    state_dict = load_places365_checkpoint(checkpoint_path)
    layer_weights = state_dict_to_layer_weights(state_dict, source=str(checkpoint_path))
    model = densenet161.build_densenet161()
    set_layer_weights(model, layer_weights, source=str(checkpoint_path))
    with atomic_path(output_path) as tmp:
        model.save_weights(tmp)
    return model
