"""Tiny real models for fast tests (CPU, 32×48 inputs, well under a second).

`tiny_encoder` goes through `build_encoder` exactly like the real backbones:
preprocessing, prefixed backbone layers, tap markers, head. Its backbone is
three seeded convolutions with taps at strides 2, 4 and 8. `tiny_emlnet`
joins two of them through the real extractor and decoder.
"""

import functools

import keras

from keras_emlnet.models.backbones import BackboneSpec, TapSpec
from keras_emlnet.models.encoder import build_encoder

TINY_TAPS = (
    TapSpec("s2", "conv1", 8, 2),
    TapSpec("s4", "conv2_bn", 12, 4),
    TapSpec("final", None, 16, 8),
)


def _tiny_backbone(input_shape, weights, *, seed):
    if weights is not None:
        raise ValueError(f"the tiny test backbone has no named weights, got {weights!r}")

    def init(offset):  # a distinct, reproducible initializer per layer
        return keras.initializers.HeUniform(seed=seed * 100 + offset)

    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(
        8, 3, strides=2, padding="same", activation="relu", kernel_initializer=init(1), name="conv1"
    )(inputs)
    x = keras.layers.Conv2D(12, 3, strides=2, padding="same", kernel_initializer=init(2), name="conv2")(x)
    # BatchNorm gives the tiny encoder non-trainable state, like the real backbones.
    x = keras.layers.BatchNormalization(name="conv2_bn")(x)
    x = keras.layers.Activation("relu", name="conv2_relu")(x)
    x = keras.layers.Conv2D(
        16, 3, strides=2, padding="same", activation="relu", kernel_initializer=init(3), name="conv3"
    )(x)
    return keras.Model(inputs, x, name="tiny_backbone")


def tiny_backbone_spec(name="tiny", seed=0):
    """A BackboneSpec of three seeded convs; taps s2 (8 ch), s4 (12 ch), final (16 ch, stride 8)."""
    return BackboneSpec(
        name=name,
        constructor=functools.partial(_tiny_backbone, seed=seed),
        preprocessing="tf",
        taps=TINY_TAPS,
        final_channels=16,
        min_input_size=8,
    )


def tiny_encoder(prefix="tiny_a", input_size=(32, 48), seed=0):
    """A real encoder (named `<prefix>_encoder`) over the tiny backbone, deterministic in `seed`."""
    return build_encoder(tiny_backbone_spec(prefix, seed), input_size=input_size, seed=seed)


def tiny_emlnet(input_size=(32, 48), *, output_mode="minmax", blur_sigma=None, resize_mode="resize", seed=0):
    """A real EMLNet over two tiny encoders (`tiny_a`, `tiny_b`), deterministic in `seed`.

    Taps: s2 (8 ch), s4 (12 ch), final (16 ch) per encoder; decoder weights
    2 * (8 + 12 + 16) + 6 = 78.
    """
    from keras_emlnet.models.emlnet import build_emlnet

    encoders = [
        tiny_encoder("tiny_a", input_size=input_size, seed=seed),
        tiny_encoder("tiny_b", input_size=input_size, seed=seed + 1),
    ]
    return build_emlnet(
        encoders,
        resize_mode=resize_mode,
        output_mode=output_mode,
        blur_sigma=blur_sigma,
        name="tiny_emlnet",
        seed=seed,
    )
