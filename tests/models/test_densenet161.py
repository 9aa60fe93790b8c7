"""DenseNet-161 builder: torchvision's size, Keras DenseNet naming, PyTorch BN epsilon.

(Numerical equality with a PyTorch forward is in test_convert_places365.py.)
"""

import keras
import pytest

from keras_emlnet.models import densenet161


@pytest.fixture(scope="module")
def model():
    return densenet161.build_densenet161((32, 32, 3))


def test_trainable_parameters_equal_torchvision_densenet161_features(model):
    # torchvision densenet161: 28,681,000 parameters, of which the classifier is 2208 * 1000 + 1000.
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    assert trainable == 28_681_000 - (2208 * 1000 + 1000) == 26_472_000


def test_topology_growth_48_blocks_6_12_36_24(model):
    assert model.get_layer("conv1_conv").filters == 96
    assert model.get_layer("conv2_block1_2_conv").filters == 48
    assert model.get_layer("conv2_block1_1_conv").filters == 4 * 48
    channels = [model.get_layer(densenet161.dense_block_output_name(b)).output.shape[-1] for b in (1, 2, 3, 4)]
    assert channels == [96 + 6 * 48, 192 + 12 * 48, 384 + 36 * 48, 1056 + 24 * 48] == [384, 768, 2112, 2208]
    assert model.output.shape == (None, 1, 1, 2208)
    assert model.layers[-1].name == "relu"


def test_layer_names_follow_keras_densenet(model):
    # DenseNet-121's blocks (6, 12, 24, 16) fit inside DenseNet-161's (6, 12, 36, 24), so every
    # weighted layer of keras.applications.DenseNet121 must exist here under the same name and type.
    reference = keras.applications.DenseNet121(include_top=False, weights=None, input_shape=(32, 32, 3))
    for layer in reference.layers:
        if layer.weights:
            assert type(model.get_layer(layer.name)) is type(layer), layer.name


def test_batch_norm_epsilon_is_pytorch_default(model):
    epsilons = {layer.epsilon for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert epsilons == {1e-5}
