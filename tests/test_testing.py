"""testing.tiny_encoder: the small real encoder other tests build on."""

import numpy as np

from keras_emlnet.models.taps import find_tap_layers
from keras_emlnet.testing import tiny_encoder


def test_names_taps_and_strides():
    encoder = tiny_encoder()
    assert encoder.name == "tiny_a_encoder"
    shapes = {name: layer.output.shape for name, layer in find_tap_layers(encoder).items()}
    assert shapes == {
        "tiny_a_tap_s2": (None, 16, 24, 8),
        "tiny_a_tap_s4": (None, 8, 12, 12),
        "tiny_a_tap_final": (None, 4, 6, 16),
    }
    assert tiny_encoder("tiny_b", input_size=(64, 96)).output.shape == (None, 64, 96, 1)


def test_carries_the_encoder_metadata():
    encoder = tiny_encoder("tiny_b", input_size=(64, 96))
    assert (encoder.backbone, encoder.tap_prefix, encoder.input_size) == ("tiny_b", "tiny_b", (64, 96))


def test_deterministic_in_the_seed(rng):
    images = rng.uniform(0, 255, size=(2, 32, 48, 3)).astype(np.float32)
    first = tiny_encoder(seed=0)(images).numpy()
    np.testing.assert_array_equal(tiny_encoder(seed=0)(images).numpy(), first)
    assert not np.allclose(tiny_encoder(seed=1)(images).numpy(), first)
    assert (first > 0).mean() > 0.1  # a usable, mostly live saliency map
