"""Places365 DenseNet-161 converter: a torch checkpoint in the official layout
converts, and the Keras encoder's taps equal a PyTorch forward pass."""

import collections
import os

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from keras_emlnet import build_encoder  # noqa: E402
from keras_emlnet import convert_places365 as convert_cli  # noqa: E402
from keras_emlnet.models import places365  # noqa: E402
from keras_emlnet.models.backbones import PLACES365_WEIGHTS_FILE  # noqa: E402
from keras_emlnet.models.preprocessing import TORCH_MEAN, TORCH_STD  # noqa: E402
from keras_emlnet.models.taps import tap_layer_name  # noqa: E402

INPUT_SHAPE = (64, 64, 3)
GROWTH, BLOCKS, STEM, BOTTLENECK = 48, (6, 12, 36, 24), 96, 4


class TorchDenseLayer(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, BOTTLENECK * GROWTH, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(BOTTLENECK * GROWTH)
        self.conv2 = nn.Conv2d(BOTTLENECK * GROWTH, GROWTH, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(F.relu(self.norm1(x)))
        y = self.conv2(F.relu(self.norm2(y)))
        return torch.cat([x, y], 1)


class TorchTransition(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels // 2, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.norm(x))), 2, 2)


class TorchDenseNet161(nn.Module):
    """torchvision's densenet161 topology (module names included), written from torch.nn."""

    def __init__(self, num_classes=365):
        super().__init__()
        modules = collections.OrderedDict(
            conv0=nn.Conv2d(3, STEM, 7, stride=2, padding=3, bias=False), norm0=nn.BatchNorm2d(STEM)
        )
        channels = STEM
        for block, num_layers in enumerate(BLOCKS, start=1):
            layers = collections.OrderedDict()
            for layer in range(1, num_layers + 1):
                layers[f"denselayer{layer}"] = TorchDenseLayer(channels)
                channels += GROWTH
            modules[f"denseblock{block}"] = nn.Sequential(layers)
            if block < len(BLOCKS):
                modules[f"transition{block}"] = TorchTransition(channels)
                channels //= 2
        modules["norm5"] = nn.BatchNorm2d(channels)
        self.features = nn.ModuleDict(modules)
        self.classifier = nn.Linear(channels, num_classes)

    def forward_taps(self, x):
        """Returns the dense block 1-3 outputs and the final ReLU map."""
        f = self.features
        x = F.max_pool2d(F.relu(f["norm0"](f["conv0"](x))), 3, 2, padding=1)
        taps = []
        for block in range(1, 5):
            x = f[f"denseblock{block}"](x)
            if block < 4:
                taps.append(x)
                x = f[f"transition{block}"](x)
        taps.append(F.relu(f["norm5"](x)))
        return taps


def _official_state_dict(model):
    """The state dict as the CSAIL release stores it: DataParallel prefix, old dotted names."""
    state = collections.OrderedDict()
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue  # the 2017 checkpoints predate this buffer
        for new, old in (("norm1", "norm.1"), ("conv1", "conv.1"), ("norm2", "norm.2"), ("conv2", "conv.2")):
            if ".denselayer" in key:
                key = key.replace(f".{new}.", f".{old}.")
        state[f"module.{key}"] = value
    return state


@pytest.fixture(scope="module")
def torch_model():
    torch.manual_seed(0)
    model = TorchDenseNet161()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):  # non-trivial BN so a swapped field shows
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint_path(torch_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("places365") / "densenet161_places365.pth.tar"
    checkpoint = {"epoch": 90, "arch": "densenet161", "state_dict": _official_state_dict(torch_model), "best_prec1": 56.1}
    # the release files use torch's legacy (pre-1.6, non-zip) serialization
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="module")
def converted_path(checkpoint_path):
    out = checkpoint_path.parent / "out" / "densenet161.weights.h5"
    convert_cli.main(["convert_places365", str(checkpoint_path), str(out)])  # the CLI entry point
    return out


def test_checkpoint_keys_use_official_layout(checkpoint_path):
    state = torch.load(checkpoint_path, weights_only=True)["state_dict"]
    assert "module.features.denseblock1.denselayer1.norm.1.weight" in state
    assert "module.features.conv0.weight" in state


@pytest.fixture(scope="module")
def places365_encoder(converted_path, tmp_path_factory):
    """The encoder built with weights="places365", read from $KERAS_HOME/models/."""
    keras_home = tmp_path_factory.mktemp("keras_home")
    (keras_home / "models").mkdir()
    os.symlink(converted_path, keras_home / "models" / PLACES365_WEIGHTS_FILE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(keras_home))
        return build_encoder("densenet161", weights="places365", input_size=INPUT_SHAPE[:2])


def test_converted_encoder_matches_pytorch(torch_model, places365_encoder, rng):
    encoder = places365_encoder
    taps = ["block1", "block2", "block3", "final"]
    features = keras.Model(encoder.input, [encoder.get_layer(tap_layer_name("densenet161", t)).output for t in taps])
    images = rng.uniform(0, 255, size=(2,) + INPUT_SHAPE).astype(np.float32)
    keras_taps = [t.numpy() for t in features(images)]  # eager: tracing 600 layers costs more

    # the encoder's own preprocessing, done independently here: torch normalisation, NCHW
    normalized = (images / 255.0 - np.array(TORCH_MEAN, np.float32)) / np.array(TORCH_STD, np.float32)
    with torch.no_grad():
        torch_taps = torch_model.forward_taps(torch.from_numpy(normalized.transpose(0, 3, 1, 2)))
    for name, got, want in zip(taps, keras_taps, torch_taps):
        want = want.numpy().transpose(0, 2, 3, 1)
        assert got.shape == want.shape, name
        assert np.abs(want).max() > 0.1, name  # a meaningful, non-degenerate comparison
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=name)


def test_converted_kernels_are_transposed_torch_kernels(torch_model, places365_encoder):
    kernel = places365_encoder.get_layer("densenet161_conv2_block1_2_conv").get_weights()[0]
    want = torch_model.features["denseblock1"].denselayer1.conv2.weight.detach().numpy()
    np.testing.assert_array_equal(kernel, want.transpose(2, 3, 1, 0))  # (O, I, kh, kw) -> (kh, kw, I, O)


def test_missing_places365_file_says_how_to_convert(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"python -m keras_emlnet.convert_places365") as error:
        build_encoder("densenet161", weights="places365", input_size=INPUT_SHAPE[:2])
    assert str(tmp_path / "models" / PLACES365_WEIGHTS_FILE) in str(error.value)


def test_output_must_be_weights_h5(checkpoint_path, tmp_path):
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        places365.convert_places365(checkpoint_path, tmp_path / "out.h5")


def test_mismatched_checkpoint_names_missing_and_unexpected_keys(torch_model, tmp_path):
    state = _official_state_dict(torch_model)
    del state["module.features.norm5.running_var"]
    del state["module.features.denseblock4.denselayer24.conv.2.weight"]
    state["module.features.extra.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pth.tar"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError) as error:
        places365.convert_places365(path, tmp_path / "out.weights.h5")
    message = str(error.value)
    assert str(path) in message
    assert "missing keys 2" in message and "features.norm5.running_var" in message
    assert "features.denseblock4.denselayer24.conv2.weight" in message
    assert "unexpected keys 1 [features.extra.weight]" in message
    assert not (tmp_path / "out.weights.h5").exists()


def test_truncated_file_is_reported_with_its_name(checkpoint_path, tmp_path):
    data = checkpoint_path.read_bytes()
    path = tmp_path / "truncated.pth.tar"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.pth.tar"):
        places365.convert_places365(path, tmp_path / "out.weights.h5")
    assert not (tmp_path / "out.weights.h5").exists()


def test_code_in_checkpoint_is_not_executed(tmp_path):
    path = tmp_path / "evil.pth.tar"
    marker = tmp_path / "ran"
    torch.save({"state_dict": {}, "payload": _Payload(str(marker))}, path)
    with pytest.raises(ValueError, match="evil.pth.tar"):
        places365.load_places365_checkpoint(path)
    assert not marker.exists()


class _Payload:
    """Pickles to a call of os.system; a weights-only reader must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_shape_mismatch_is_reported(torch_model):
    state = places365.normalize_state_dict(_official_state_dict(torch_model))
    state["features.conv0.weight"] = state["features.conv0.weight"][:, :, :5, :5]
    layer_weights = places365.state_dict_to_layer_weights(state, source="ckpt")
    inputs = keras.Input((32, 32, 3))
    stem = keras.Model(inputs, keras.layers.Conv2D(96, 7, use_bias=False, name="conv1_conv")(inputs))
    with pytest.raises(ValueError, match=r"ckpt: layer conv1_conv expects shapes \[\(7, 7, 3, 96\)\]"):
        places365.set_layer_weights(stem, {"conv1_conv": layer_weights["conv1_conv"]}, source="ckpt")
