"""Stable names for the layers an encoder exposes to the decoder ("taps").

An encoder built by `build_encoder` marks every tapped feature map with an
Identity layer named `<prefix>_tap_<tap>` (for example `nasnet_tap_reduce6`).
The names survive `.keras` save/load, so the feature extractor can find the
taps of any trained encoder without knowing how its backbone names layers.
"""

import re

TAP_SEPARATOR = "_tap_"
_TAP_NAME = re.compile(r"^(?P<prefix>[A-Za-z0-9_.-]+?)_tap_(?P<tap>[A-Za-z0-9_.-]+)$")


def tap_layer_name(prefix, tap):
    """Returns the layer name that marks tap `tap` of the encoder `prefix`."""
    if not prefix or not tap:
        raise ValueError(f"tap_layer_name needs a prefix and a tap name, got {prefix!r}, {tap!r}")
    return f"{prefix}{TAP_SEPARATOR}{tap}"


def parse_tap_layer_name(name):
    """Returns (prefix, tap) for a tap layer name, or None for any other name."""
    match = _TAP_NAME.match(name)
    if match is None:
        return None
    return match.group("prefix"), match.group("tap")


def find_tap_layers(model):
    """Returns {layer name: layer} for the tap layers of `model`, in graph order.

    Raises:
        ValueError: if the model has no tap layer (it was not built by
            `build_encoder`).
    """
    taps = {layer.name: layer for layer in model.layers if parse_tap_layer_name(layer.name)}
    if not taps:
        raise ValueError(
            f"model {model.name!r} has no tap layers (layers named '<prefix>{TAP_SEPARATOR}<tap>'); "
            "build encoders with keras_emlnet.build_encoder"
        )
    return taps


def find_tap_prefix(model):
    """Returns the prefix shared by all tap layers of `model`.

    Raises:
        ValueError: if the model has no tap layer, or its taps mix prefixes.
    """
    prefixes = {parse_tap_layer_name(name)[0] for name in find_tap_layers(model)}
    if len(prefixes) != 1:
        raise ValueError(
            f"model {model.name!r} has tap layers with several prefixes {sorted(prefixes)}; "
            "an encoder built by build_encoder has exactly one"
        )
    return prefixes.pop()
