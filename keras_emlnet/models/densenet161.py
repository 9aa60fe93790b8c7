"""DenseNet-161 in Keras (keras.applications only builds growth rate 32).

Same topology as torchvision's `densenet161` feature extractor (growth rate 48,
blocks 6/12/36/24, 96 stem filters, bottleneck 4 × growth, compression 0.5) and
the same layer names as `keras.applications.DenseNet121` (`conv1_conv`,
`conv2_block1_0_bn`, `pool2_conv`, ..., `bn`, `relu`), so weights converted
from PyTorch (`keras_emlnet.convert_places365`) map onto layers by name.
BatchNorm epsilon is PyTorch's 1e-5 (keras.applications uses 1.001e-5).

Without its classifier it has 26,472,000 trainable parameters, exactly
torchvision's densenet161 minus its 2208 × 1000 + 1000 classifier.
"""

import keras
from keras import layers

GROWTH_RATE = 48
BLOCKS = (6, 12, 36, 24)
STEM_FILTERS = 96
BOTTLENECK_WIDTH = 4  # the 1x1 conv of a dense layer has 4 x growth filters
COMPRESSION = 0.5  # a transition halves the channels
BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d's default
# Keras DenseNet block labels: dense block i is "conv{i+2}", transition i is "pool{i+2}".
BLOCK_LABELS = ("conv2", "conv3", "conv4", "conv5")
TRANSITION_LABELS = ("pool2", "pool3", "pool4")


def _batch_norm(name):
    return layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, name=name)


def _dense_layer(x, name):
    y = _batch_norm(f"{name}_0_bn")(x)
    y = layers.Activation("relu", name=f"{name}_0_relu")(y)
    y = layers.Conv2D(BOTTLENECK_WIDTH * GROWTH_RATE, 1, use_bias=False, name=f"{name}_1_conv")(y)
    y = _batch_norm(f"{name}_1_bn")(y)
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = layers.Conv2D(GROWTH_RATE, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    return layers.Concatenate(axis=-1, name=f"{name}_concat")([x, y])


def _transition(x, name):
    x = _batch_norm(f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.Conv2D(int(x.shape[-1] * COMPRESSION), 1, use_bias=False, name=f"{name}_conv")(x)
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def dense_block_output_name(block):
    """Name of the layer that outputs dense block `block` (1-based), e.g. conv2_block6_concat."""
    return f"{BLOCK_LABELS[block - 1]}_block{BLOCKS[block - 1]}_concat"


def build_densenet161(input_shape=(None, None, 3), *, input_tensor=None, name="densenet161"):
    """Builds the DenseNet-161 feature extractor (no classifier), randomly initialised.

    Expects inputs already normalised as the weights were trained (for
    Places365: torchvision's ImageNet mean/std, `BackbonePreprocessing("torch")`).

    Args:
        input_shape: (H, W, 3); H and W may be None.
        input_tensor: optional Keras tensor to build on instead of a new Input.
        name: the model's name.

    Returns:
        A functional keras.Model from images to the final 2208-channel ReLU
        map at stride 32 (layer "relu"). Dense block outputs at strides 4, 8,
        16, 32 are the layers `dense_block_output_name(1..4)`.
    """
    inputs = keras.Input(shape=input_shape) if input_tensor is None else input_tensor
    # PyTorch: conv0 7x7/2 padding 3, pool0 3x3/2 padding 1. Zero padding before
    # the max pool equals PyTorch's -inf padding because its input is post-ReLU (>= 0).
    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="zero_padding2d")(inputs)
    x = layers.Conv2D(STEM_FILTERS, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = _batch_norm("conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="zero_padding2d_1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for index, num_layers in enumerate(BLOCKS):
        for layer in range(num_layers):
            x = _dense_layer(x, f"{BLOCK_LABELS[index]}_block{layer + 1}")
        if index < len(TRANSITION_LABELS):
            x = _transition(x, TRANSITION_LABELS[index])
    x = _batch_norm("bn")(x)
    x = layers.Activation("relu", name="relu")(x)
    return keras.Model(inputs, x, name=name)
