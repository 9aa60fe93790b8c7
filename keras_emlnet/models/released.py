"""The authors' released EML-NET (SenJia/EML-NET-Saliency, ResNet-50 variant) as Keras models.

The official `resnet.py`, `decoder.py` and `eval_combined.py` define it:

    encoder (one per pretraining: "imagenet", "places"):
      image RGB / 255 (no mean/std) → torchvision-layout ResNet-50
      readouts output0..output4 on the stem's ReLU (1/2) and layer1..layer4:
        3x3 conv to one map (bias) → BatchNorm → ReLU          (taps output0..output4)
      `combined` head: readouts 1-4 nearest-resized to output0's size, concat
        → 3x3 conv (5 → 1, bias) → BatchNorm → sigmoid → nearest resize to the input
    decoder (over both encoders' readouts, imagenet first):
      per readout 3x3 conv (1 → 1, bias) → BatchNorm → ReLU → nearest resize to the input size
      concat (10) → 3x3 conv (10 → 1, bias) → BatchNorm → sigmoid
    inference (eval_combined.py): Gaussian blur sigma 5 at 480x640
      (skimage.filters.gaussian: mode nearest, truncate 4), min-max to [0, 1]

Nearest resizes use PyTorch's indexing (`resizing.TorchNearestResize`). The
encoders are `SaliencyEncoder`s whose taps are the five readouts, so
`build_feature_extractor` can freeze them beside any other encoder; the
EMLNet (`build_released_emlnet`) is an ordinary `EMLNet` over them.
`released_weights` fills these models from the released checkpoints.
"""

import keras

from keras_emlnet.models import resnet50_torch
from keras_emlnet.models.emlnet import EMLNet
from keras_emlnet.models.encoder import SaliencyEncoder
from keras_emlnet.models.extractor import build_feature_extractor, tap_shapes
from keras_emlnet.models.resizing import TorchNearestResize
from keras_emlnet.models.taps import parse_tap_layer_name, tap_layer_name

BACKBONE = "resnet50_torch"  # SaliencyEncoder.backbone of a released encoder
INPUT_SIZE = (480, 640)  # eval_combined.py's --size (SALICON)
BLUR_SIGMA = 5.0  # eval_combined.py: filters.gaussian(pred, 5)
READOUTS = ("output0", "output1", "output2", "output3", "output4")  # tap names = torch module names
READOUT_STAGES = dict(zip(READOUTS, resnet50_torch.STAGES))  # output0 reads the stem's ReLU, ...
ENCODER_PREFIXES = ("imagenet", "places")  # res_imagenet.pth, res_places.pth
DECODER_GROUPS = ("img_model", "pla_model")  # the decoder's torch module list per encoder, same order


def conv_bn(x, filters, *, name, activation):
    """The released readout unit: 3x3 conv (padding 1, bias) → BatchNorm → activation.

    Layers `<name>_0` (conv), `<name>_1` (BatchNorm), `<name>_2`: the torch
    `nn.Sequential` indices.
    """
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=True, name=f"{name}_0")(x)
    x = resnet50_torch.batch_norm(x, name=f"{name}_1")
    return keras.layers.Activation(activation, name=f"{name}_2")(x)


def build_released_encoder(prefix, *, input_size=INPUT_SIZE):
    """Builds one released encoder (random weights; `released_weights` fills them).

    Args:
        prefix: layer-name and tap prefix ("imagenet" or "places" in the
            converted model); the model is `<prefix>_encoder`.
        input_size: (H, W) of the RGB 0-255 input.

    Returns:
        A `SaliencyEncoder` (B, H, W, 3) → (B, H, W, 1) float32 sigmoid map
        (the released `combined` head), taps `<prefix>_tap_output0..4`.
    """
    input_size = tuple(int(dim) for dim in input_size)
    if len(input_size) != 2 or min(input_size) < 1:
        raise ValueError(f"input_size must be (H, W) with positive sizes, got {input_size}")
    inputs = keras.Input(shape=(*input_size, 3), name=f"{prefix}_image")
    # transforms.ToTensor(): RGB / 255, no mean/std normalisation.
    x = keras.layers.Rescaling(1.0 / 255.0, name=f"{prefix}_rescale")(inputs)
    stages = resnet50_torch.resnet50_torch(x, prefix)
    readouts = []
    for readout in READOUTS:
        name = resnet50_torch.layer_name(prefix, readout)
        y = conv_bn(stages[READOUT_STAGES[readout]], 1, name=name, activation="relu")
        readouts.append(keras.layers.Identity(name=tap_layer_name(prefix, readout))(y))
    # forward(decode=False): readouts 1-4 to output0's size, `combined`, input size.
    resized = [readouts[0]] + [
        TorchNearestResize(name=f"{prefix}_{readout}_resize")(y, readouts[0])
        for readout, y in zip(READOUTS[1:], readouts[1:])
    ]
    x = keras.layers.Concatenate(name=f"{prefix}_combined_concat")(resized)
    x = conv_bn(x, 1, name=resnet50_torch.layer_name(prefix, "combined"), activation="sigmoid")
    outputs = TorchNearestResize(name=f"{prefix}_combined_resize", dtype="float32")(x, inputs)
    return SaliencyEncoder(inputs, outputs, name=f"{prefix}_encoder", backbone=BACKBONE, tap_prefix=prefix)


def encoder_module_paths(prefix):
    """{Keras layer name: torch module path} for every weighted layer of a released encoder."""
    paths = resnet50_torch.module_paths()
    for head in READOUTS + ("combined",):
        paths += [f"{head}.0", f"{head}.1"]
    return {resnet50_torch.layer_name(prefix, path): path for path in paths}


def build_released_decoder(feature_shapes, input_size, *, name="decoder"):
    """Builds the released decoder over a dict of one-channel readouts.

    Args:
        feature_shapes: {tap name: (h, w, 1)} in concatenation order (the
            extractor's `tap_shapes`: imagenet's output0..4, then places').
        input_size: (H, W) every readout is resized to (the released
            `Decoder.shape`, 480x640) and the output size.
        name: the model name and layer-name prefix: `<name>_<encoder>_<tap>_0/1`
            per readout, `<name>_combined_0/1`.

    Returns:
        A `keras.Model` {tap name: (B, h, w, 1)} → (B, H, W, 1) float32 sigmoid map.
    """
    input_size = tuple(int(dim) for dim in input_size)
    feature_shapes = {tap: tuple(shape) for tap, shape in dict(feature_shapes).items()}
    if not feature_shapes:
        raise ValueError("build_released_decoder needs at least one readout, got none")
    inputs = {tap: keras.Input(shape=shape, name=tap) for tap, shape in feature_shapes.items()}
    maps = []
    for tap, shape in feature_shapes.items():
        if len(shape) != 3 or shape[-1] != 1 or None in shape:
            raise ValueError(f"readout {tap!r} must be a static one-channel map (h, w, 1), got {shape}")
        stem = f"{name}_{_tap_stem(tap)}"
        x = conv_bn(inputs[tap], 1, name=stem, activation="relu")
        maps.append(TorchNearestResize(input_size, name=f"{stem}_resize")(x))
    x = maps[0] if len(maps) == 1 else keras.layers.Concatenate(name=f"{name}_concat")(maps)
    x = keras.layers.Conv2D(1, 3, padding="same", use_bias=True, name=f"{name}_combined_0")(x)
    x = resnet50_torch.batch_norm(x, name=f"{name}_combined_1")
    outputs = keras.layers.Activation("sigmoid", dtype="float32", name=f"{name}_combined_2")(x)
    return keras.Model(inputs, outputs, name=name)


def decoder_module_paths(name="decoder", prefixes=ENCODER_PREFIXES):
    """{Keras layer name: torch module path} for the released decoder (`img_model.i`, `pla_model.i`, `combined`)."""
    paths = {}
    for prefix, group in zip(prefixes, DECODER_GROUPS, strict=True):
        for index, readout in enumerate(READOUTS):
            stem = f"{name}_{_tap_stem(tap_layer_name(prefix, readout))}"
            paths[f"{stem}_0"] = f"{group}.{index}.0"
            paths[f"{stem}_1"] = f"{group}.{index}.1"
    paths[f"{name}_combined_0"] = "combined.0"
    paths[f"{name}_combined_1"] = "combined.1"
    return paths


def build_released_emlnet(encoders=None, *, input_size=INPUT_SIZE, blur_sigma=BLUR_SIGMA, name="emlnet"):
    """Builds the released EML-NET as an `EMLNet` (random decoder; `released_weights` fills it).

    Args:
        encoders: the two released encoders ("imagenet", "places"); None
            builds them (random weights). Their layers are shared with the
            extractor, which freezes them (`trainable=False`): save an encoder
            that should stay trainable before calling this.
        input_size: (H, W) of the model when the encoders are built here.
        blur_sigma: the EMLNet's blur in pixels at the model size (5 as released).
        name: the model name.

    Returns:
        (emlnet, encoders): the EMLNet (output "minmax", resize mode
        "resize") and the two `SaliencyEncoder`s its extractor freezes.
    """
    if encoders is None:
        encoders = [build_released_encoder(prefix, input_size=input_size) for prefix in ENCODER_PREFIXES]
    extractor = build_feature_extractor(encoders, name=f"{name}_extractor")
    decoder = build_released_decoder(tap_shapes(extractor), extractor.input_shape[1:3], name=f"{name}_decoder")
    emlnet = EMLNet(extractor, decoder, resize_mode="resize", output_mode="minmax", blur_sigma=blur_sigma,
                    name=name)
    return emlnet, encoders


def _tap_stem(tap):
    parsed = parse_tap_layer_name(tap)
    return tap if parsed is None else f"{parsed[0]}_{parsed[1]}"
