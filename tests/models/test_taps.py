import pytest

from keras_emlnet.models import taps


def test_tap_name_round_trip():
    name = taps.tap_layer_name("densenet161", "block3")
    assert name == "densenet161_tap_block3"
    assert taps.parse_tap_layer_name(name) == ("densenet161", "block3")


def test_non_tap_names_are_rejected():
    assert taps.parse_tap_layer_name("conv1_block1_concat") is None
    with pytest.raises(ValueError, match="prefix"):
        taps.tap_layer_name("", "final")


def test_find_tap_layers_names_the_model_without_taps():
    import keras

    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Identity(name="plain")(inputs), name="no_taps")
    with pytest.raises(ValueError, match="no_taps"):
        taps.find_tap_layers(model)
    marked = keras.layers.Identity(name=taps.tap_layer_name("toy", "final"))(inputs)
    assert list(taps.find_tap_layers(keras.Model(inputs, marked))) == ["toy_tap_final"]
