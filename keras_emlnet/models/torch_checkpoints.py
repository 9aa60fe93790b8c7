"""Reading PyTorch checkpoints into Keras layers, without running code from the file.

What the PyTorch converters share (`places365` for CSAIL's DenseNet-161,
`released_weights` for the authors' EML-NET): torch is imported lazily
(only converting needs it), files are read with `torch.load(weights_only=True)`
(tensors and plain containers only; a pickle that would call anything else
is refused, in both the zip and the legacy format), the `{'state_dict': ...}`
wrapper and DataParallel's `module.` prefix are removed, BatchNorm's
`num_batches_tracked` counters are dropped, and arrays are assigned to Keras
layers in Keras's layout (conv kernels (O, I, kh, kw) → (kh, kw, I, O);
BatchNorm weight, bias, running_mean, running_var → gamma, beta,
moving_mean, moving_variance), every key and shape checked.
"""

import numpy as np

DATA_PARALLEL_PREFIX = "module."
BN_FIELDS = ("weight", "bias", "running_mean", "running_var")  # = Keras gamma, beta, moving mean/var
TORCH_MISSING = (
    "converting a PyTorch checkpoint needs torch (the CPU build is enough: pip install torch); "
    "the converted Keras model does not"
)


def import_torch():
    """Returns the torch module, imported now.

    Raises:
        ImportError: torch is not installed (the message says what needs it).
    """
    try:
        import torch
    except ImportError as error:
        raise ImportError(TORCH_MISSING) from error
    return torch


def read_state_dict(path):
    """Reads a checkpoint without executing code from it → {key: float ndarray}.

    Accepts a bare state dict or `{'state_dict': ..., other entries}`, keys
    with or without `module.`, zip or legacy serialisation. Drops
    `num_batches_tracked`.

    Raises:
        ImportError: torch is not installed.
        ValueError: the file is not a readable checkpoint, or holds code that
            `weights_only` refuses, or is not a dict of tensors (the message
            names the file).
    """
    torch = import_torch()
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip/pickle, forbidden globals, wrong file
        raise ValueError(f"cannot read PyTorch checkpoint {path}: {error}") from error
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: expected a state dict or a dict with 'state_dict', got {type(checkpoint).__name__}")
    state_dict = {}
    for key, value in checkpoint.items():
        if not isinstance(key, str) or not hasattr(value, "detach"):
            raise ValueError(f"{path}: entry {key!r} is not a named tensor ({type(value).__name__})")
        if key.startswith(DATA_PARALLEL_PREFIX):
            key = key[len(DATA_PARALLEL_PREFIX) :]
        if key.endswith("num_batches_tracked"):
            continue  # BatchNorm bookkeeping, absent from old checkpoints
        if key in state_dict:
            raise ValueError(f"{path}: key {key!r} appears with and without the 'module.' prefix")
        state_dict[key] = value.detach().cpu().numpy()
    return state_dict


def describe_keys(keys, limit=8):
    """'N [k1, k2, ...]' for an error message."""
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} [{shown}{', ...' if len(keys) > limit else ''}]"


def check_keys(state_dict, expected, source, *, ignored=(), what="the model"):
    """Raises ValueError naming the missing and unexpected keys, if any."""
    present = set(state_dict)
    missing = set(expected) - present
    unexpected = present - set(expected) - set(ignored)
    problems = [f"{label} keys {describe_keys(keys)}" for label, keys in (("missing", missing),
                                                                             ("unexpected", unexpected)) if keys]
    if problems:
        raise ValueError(f"{source} does not match {what}: {'; '.join(problems)}")


def layer_torch_keys(layer, module_path):
    """The state-dict keys of Keras layer `layer` (a Conv2D or BatchNormalization) at `module_path`."""
    if layer.__class__.__name__ == "BatchNormalization":
        return [f"{module_path}.{field}" for field in BN_FIELDS]
    if layer.__class__.__name__ == "Conv2D":
        return [f"{module_path}.weight"] + ([f"{module_path}.bias"] if layer.use_bias else [])
    raise ValueError(f"layer {layer.name} ({layer.__class__.__name__}) has no PyTorch counterpart here")


def to_keras_layout(array, keras_shape):
    """A torch array in Keras layout: 4-D conv kernels (O, I, kh, kw) → (kh, kw, I, O)."""
    if len(keras_shape) == 4 and array.ndim == 4:
        return np.transpose(array, (2, 3, 1, 0))
    return array


def assign_torch_weights(model, module_paths, state_dict, source, *, what="the model"):
    """Sets the weights of `model`'s layers from a state dict, checking every key and shape.

    Args:
        model: the Keras model (layers looked up by name).
        module_paths: {Keras layer name: torch module path} for every layer
            that has weights in the checkpoint.
        state_dict: {key: ndarray} from `read_state_dict`.
        source: names the checkpoint in errors.
        what: names the model in errors.

    Raises:
        ValueError: a missing or unexpected key (all listed), or a key whose
            shape does not fit (named, with both shapes).
    """
    layers = {name: model.get_layer(name) for name in module_paths}
    expected = {key for name, path in module_paths.items() for key in layer_torch_keys(layers[name], path)}
    check_keys(state_dict, expected, source, what=what)
    for name, path in module_paths.items():
        layer = layers[name]
        arrays = []
        for key, variable in zip(layer_torch_keys(layer, path), layer.weights):
            keras_shape = tuple(variable.shape)
            array = to_keras_layout(np.asarray(state_dict[key], dtype=np.float32), keras_shape)
            if array.shape != keras_shape:
                torch_shape = tuple(np.asarray(state_dict[key]).shape)
                want = keras_shape if len(keras_shape) != 4 else tuple(np.array(keras_shape)[[3, 2, 0, 1]])
                raise ValueError(f"{source}: key {key!r} has shape {torch_shape}, {what} needs {want}")
            arrays.append(array)
        layer.set_weights(arrays)
