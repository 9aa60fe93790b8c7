"""The EML-NET decoder: combines the tapped feature maps into one saliency map.

Per the paper (§3.3), for the taps of the frozen extractor:

    each tap (h_i, w_i, c_i) -> 1x1 conv to one map, no bias -> ReLU
        -> bilinear resize to the largest tap's size (120x160 at 480x640)
    concat (one channel per tap) -> 1x1 conv to one map, no bias
        -> bilinear upsample to the input size

Weights: sum_i c_i + n_taps. NASNet (1344 + 2688 + 4032) + DenseNet-161
(384 + 768 + 2112 + 2208) = 13,536 + 7 = 13,543.

Two choices the paper leaves open, made here so that the output is a valid
(non-negative) saliency map from the first step, which the KLD term of the loss
needs:
- the fusing conv's weights are constrained non-negative (`NonNeg`); its inputs
  are ReLU maps, so its output is >= 0 without an extra activation or weight,
  like the encoders' ReLU maps;
- initial weights are positive: tap convs uniform in [0, 2/c_i] (each tap map
  starts near its channel mean, so no ReLU starts dead) and the fusing conv
  1/n_taps (the initial map is the average of the tap maps).
"""

from collections.abc import Mapping

import keras

from keras_emlnet.models import taps as taps_lib


def build_decoder(
    feature_shapes: Mapping[str, tuple[int, int, int]], input_size: tuple[int, int], *, name: str = "decoder",
    seed: int = 0,
) -> keras.Model:
    """Builds the decoder as a functional model over a dict of tap features.

    Args:
        feature_shapes: {tap name: (h, w, c)} in concatenation order, e.g.
            `keras_emlnet.models.extractor.tap_shapes(extractor)`. Static sizes.
        input_size: (H, W) of the model input; the returned map has this size.
        name: the model name and the prefix of every layer name
            (`<name>_<prefix>_<tap>_conv`, `<name>_fuse_conv`, ...).
        seed: seeds the tap convs' initial weights.

    Returns:
        A `keras.Model` taking {tap name: (B, h, w, c)} and returning the
        non-negative, unnormalised map (B, H, W, 1) float32, with
        `sum(c) + len(feature_shapes)` trainable weights.

    Raises:
        ValueError: on no taps, a non-static tap shape, or a bad output size.
    """
    feature_shapes = {tap_name: tuple(shape) for tap_name, shape in dict(feature_shapes).items()}
    if not feature_shapes:
        raise ValueError("build_decoder needs at least one tap, got none")
    for tap_name, shape in feature_shapes.items():
        if len(shape) != 3 or any(dim is None or dim < 1 for dim in shape):
            raise ValueError(f"tap {tap_name!r} needs a static shape (h, w, c), got {shape}")
    input_size = tuple(int(dim) for dim in input_size)
    if len(input_size) != 2 or min(input_size) < 1:
        raise ValueError(f"input_size must be (H, W) with positive sizes, got {input_size}")

    # "largest tap" = most pixels; ties go to the first tap in order.
    fused_size = max((shape[:2] for shape in feature_shapes.values()), key=lambda hw: hw[0] * hw[1])
    inputs = {
        tap_name: keras.Input(shape=shape, name=tap_name) for tap_name, shape in feature_shapes.items()
    }
    tap_maps = []
    for index, (tap_name, shape) in enumerate(feature_shapes.items()):
        stem = f"{name}_{_short_tap_name(tap_name)}"
        channels = shape[-1]
        x = keras.layers.Conv2D(
            1,
            1,
            use_bias=False,
            kernel_initializer=keras.initializers.RandomUniform(0.0, 2.0 / channels, seed=seed + index),
            name=f"{stem}_conv",
        )(inputs[tap_name])
        x = keras.layers.ReLU(name=f"{stem}_relu")(x)
        if shape[:2] != fused_size:
            x = keras.layers.Resizing(*fused_size, interpolation="bilinear", name=f"{stem}_resize")(x)
        tap_maps.append(x)

    x = tap_maps[0] if len(tap_maps) == 1 else keras.layers.Concatenate(name=f"{name}_concat")(tap_maps)
    x = keras.layers.Conv2D(
        1,
        1,
        use_bias=False,
        kernel_initializer=keras.initializers.Constant(1.0 / len(tap_maps)),
        kernel_constraint=keras.constraints.NonNeg(),
        name=f"{name}_fuse_conv",
    )(x)
    if fused_size != input_size:
        x = keras.layers.Resizing(*input_size, interpolation="bilinear", name=f"{name}_upsample")(x)
    # float32 output even under a mixed-precision policy (the loss and the
    # post-processing normalise over many pixels).
    outputs = keras.layers.Activation("linear", dtype="float32", name=f"{name}_output")(x)
    return keras.Model(inputs, outputs, name=name)


def _short_tap_name(tap_name):
    parsed = taps_lib.parse_tap_layer_name(tap_name)
    return tap_name if parsed is None else f"{parsed[0]}_{parsed[1]}"
