"""ResNet-50 in torchvision's layout, as the released EML-NET code defines it (`resnet.py`).

It differs from `keras.applications.ResNet50` (which the `resnet50` backbone
uses) in three ways that change the numbers, so converted PyTorch weights
need this graph:
- a bottleneck's stride is on its 3x3 conv (`conv2`), not on the first 1x1;
- padding is PyTorch's, symmetric (`ZeroPadding2D` + a valid conv; Keras's
  "same" pads more on the bottom/right for stride 2 on even sizes); the max
  pool pads with zeros, which equals PyTorch's -inf padding because its input
  is a ReLU output (>= 0) and every window holds a real pixel;
- BatchNorm epsilon 1e-5 (PyTorch's default; Keras's ResNet50 uses 1.001e-5),
  momentum 0.9 (= PyTorch's 0.1).

Layers are named after the torch module paths (`layer1.0.conv1` →
`<prefix>_layer1_0_conv1`), so `module_paths` maps every weighted layer to
its state-dict keys. Convs have no bias. Any input size works (output sizes as
PyTorch's: floor((n + 2p - k) / s) + 1 per conv and pool).
"""

import keras

BLOCKS = (3, 4, 6, 3)  # bottlenecks per stage (layer1..layer4)
WIDTHS = (64, 128, 256, 512)  # bottleneck widths; outputs are 4x wider
EXPANSION = 4
STEM_CHANNELS = 64
BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d default
BN_MOMENTUM = 0.9  # Keras momentum = 1 - PyTorch's 0.1
STAGES = ("relu", "layer1", "layer2", "layer3", "layer4")  # the feature maps `resnet50_torch` returns
STAGE_CHANNELS = {"relu": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}
STAGE_STRIDES = {"relu": 2, "layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}


def layer_name(prefix, module_path):
    """The Keras layer name of torch module `module_path` (dots become underscores)."""
    return f"{prefix}_{module_path.replace('.', '_')}"


def conv(x, filters, kernel_size, *, stride=1, padding=0, use_bias=False, name):
    """PyTorch's Conv2d(kernel_size, stride, padding): symmetric zero padding, then a valid conv."""
    if padding:
        x = keras.layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(filters, kernel_size, strides=stride, padding="valid", use_bias=use_bias,
                               name=name)(x)


def batch_norm(x, *, name):
    """PyTorch's BatchNorm2d: epsilon 1e-5, running averages with momentum 0.1."""
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def _bottleneck(x, prefix, path, width, stride, downsample):
    name = lambda module: layer_name(prefix, f"{path}.{module}")  # noqa: E731
    out = conv(x, width, 1, name=name("conv1"))
    out = keras.layers.ReLU(name=name("relu1"))(batch_norm(out, name=name("bn1")))
    out = conv(out, width, 3, stride=stride, padding=1, name=name("conv2"))
    out = keras.layers.ReLU(name=name("relu2"))(batch_norm(out, name=name("bn2")))
    out = batch_norm(conv(out, width * EXPANSION, 1, name=name("conv3")), name=name("bn3"))
    if downsample:
        x = conv(x, width * EXPANSION, 1, stride=stride, name=name("downsample.0"))
        x = batch_norm(x, name=name("downsample.1"))
    out = keras.layers.Add(name=name("add"))([out, x])
    return keras.layers.ReLU(name=name("out"))(out)


def resnet50_torch(x, prefix):
    """Builds the backbone on tensor `x` (RGB scaled as the weights expect).

    Returns:
        {stage: tensor} for `STAGES`: "relu" (the stem's ReLU, 64 ch at 1/2,
        before the max pool) and "layer1".."layer4" (256/512/1024/2048 ch at
        1/4..1/32).
    """
    features = {}
    x = conv(x, STEM_CHANNELS, 7, stride=2, padding=3, name=layer_name(prefix, "conv1"))
    x = batch_norm(x, name=layer_name(prefix, "bn1"))
    x = features["relu"] = keras.layers.ReLU(name=layer_name(prefix, "relu"))(x)
    x = keras.layers.ZeroPadding2D(1, name=layer_name(prefix, "maxpool_pad"))(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=layer_name(prefix, "maxpool"))(x)
    channels = STEM_CHANNELS
    for stage, (blocks, width) in enumerate(zip(BLOCKS, WIDTHS), start=1):
        stride = 1 if stage == 1 else 2
        for block in range(blocks):
            downsample = block == 0 and (stride != 1 or channels != width * EXPANSION)
            x = _bottleneck(x, prefix, f"layer{stage}.{block}", width, stride if block == 0 else 1, downsample)
            channels = width * EXPANSION
        features[f"layer{stage}"] = x
    return features


def module_paths():
    """The torch module path of every weighted layer (convs and BatchNorms), in graph order."""
    paths = ["conv1", "bn1"]
    for stage, blocks in enumerate(BLOCKS, start=1):
        for block in range(blocks):
            path = f"layer{stage}.{block}"
            paths += [f"{path}.{module}" for module in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")]
            if block == 0:
                paths += [f"{path}.downsample.0", f"{path}.downsample.1"]
    return paths
