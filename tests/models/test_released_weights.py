"""Reading the released checkpoints: every form the official loader accepts, strict keys and shapes,
no code execution, torch only to convert."""

import pickle
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from keras_emlnet.models import released, torch_checkpoints  # noqa: E402
from keras_emlnet.models.released_weights import load_decoder_weights, load_encoder_weights  # noqa: E402

SMALL = (32, 32)


@pytest.fixture(scope="module")
def state_dicts(released_checkpoints):
    (imagenet, _, decoder), _ = released_checkpoints
    return imagenet.state_dict(), decoder.state_dict()


@pytest.fixture(scope="module")
def encoder():
    return released.build_released_encoder("imagenet", input_size=SMALL)


@pytest.fixture(scope="module")
def decoder_model():
    shapes = {}
    for prefix in released.ENCODER_PREFIXES:
        for readout, size in zip(released.READOUTS, ((16, 16), (8, 8), (4, 4), (2, 2), (1, 1))):
            shapes[f"{prefix}_tap_{readout}"] = (*size, 1)
    return released.build_released_decoder(shapes, SMALL, name="decoder")


def _save(obj, path, *, wrapper, module, legacy):
    state = {f"module.{k}" if module else k: v for k, v in obj.items()}
    torch.save({"state_dict": state, "epoch": 9} if wrapper else state, path,
               _use_new_zipfile_serialization=not legacy)
    return str(path)


@pytest.mark.parametrize("wrapper", [True, False], ids=["state_dict", "bare"])
@pytest.mark.parametrize("module", [True, False], ids=["module", "plain"])
@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_every_checkpoint_form_reads_to_the_same_state_dict(state_dicts, tmp_path, wrapper, module, legacy):
    state, _ = state_dicts
    read = torch_checkpoints.read_state_dict(_save(state, tmp_path / "c.pth", wrapper=wrapper, module=module,
                                                   legacy=legacy))
    want = {k: v.numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert read.keys() == want.keys()
    for key, value in want.items():
        np.testing.assert_array_equal(read[key], value, err_msg=key)


def test_weights_land_in_keras_layout(encoder, state_dicts):
    state, _ = state_dicts
    load_encoder_weights(encoder, {k: v.numpy() for k, v in state.items() if "num_batches" not in k}, "ckpt")
    kernel = encoder.get_layer("imagenet_layer3_1_conv2").kernel.numpy()
    np.testing.assert_array_equal(kernel, state["layer3.1.conv2.weight"].numpy().transpose(2, 3, 1, 0))
    gamma, beta, mean, var = (w.numpy() for w in encoder.get_layer("imagenet_output2_1").weights)
    for got, key in ((gamma, "weight"), (beta, "bias"), (mean, "running_mean"), (var, "running_var")):
        np.testing.assert_array_equal(got, state[f"output2.1.{key}"].numpy())
    np.testing.assert_array_equal(encoder.get_layer("imagenet_combined_0").bias.numpy(),
                                  state["combined.0.bias"].numpy())


@pytest.mark.parametrize("change, key", [
    ("drop", "layer3.2.bn2.running_var"),
    ("add", "fc.weight"),
    ("reshape", "output2.0.weight"),
    ("reshape", "layer1.0.downsample.1.running_mean"),
])
def test_encoder_key_errors_name_the_key(encoder, state_dicts, change, key):
    state = {k: v.numpy() for k, v in state_dicts[0].items() if not k.endswith("num_batches_tracked")}
    if change == "drop":
        del state[key]
    elif change == "add":
        state[key] = np.zeros((1000, 2048), np.float32)
    else:
        state[key] = np.zeros((3,) + state[key].shape[1:], np.float32)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")) as raised:
        load_encoder_weights(encoder, state, "res_imagenet.pth")
    assert "res_imagenet.pth" in str(raised.value)


def test_decoder_keys_and_errors(decoder_model, state_dicts):
    state = {k: v.numpy() for k, v in state_dicts[1].items() if not k.endswith("num_batches_tracked")}
    load_decoder_weights(decoder_model, state, "res_decoder.pth")
    np.testing.assert_array_equal(decoder_model.get_layer("decoder_places_output3_0").kernel.numpy(),
                                  state["pla_model.3.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(decoder_model.get_layer("decoder_combined_1").moving_variance.numpy(),
                                  state["combined.1.running_var"])
    del state["pla_model.4.1.weight"]
    with pytest.raises(ValueError, match=r"pla_model\.4\.1\.weight"):
        load_decoder_weights(decoder_model, state, "res_decoder.pth")


class _Hostile:
    """Unpickling this calls open(marker, "w"): code execution leaves the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("form", ["pickle", "torch_zip", "torch_legacy"])
def test_hostile_pickle_is_refused_without_running_it(tmp_path, form):
    marker = tmp_path / "code_ran"
    path = tmp_path / "res_imagenet.pth"
    payload = {"state_dict": {"conv1.weight": torch.zeros(1)}, "x": _Hostile(marker)}
    if form == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=form == "torch_zip")
    assert not marker.exists()
    with pytest.raises(ValueError, match="res_imagenet.pth"):
        torch_checkpoints.read_state_dict(str(path))
    assert not marker.exists()
    # the file is hostile indeed: an unrestricted load runs its code
    torch.load(path, weights_only=False) if form != "pickle" else pickle.loads(path.read_bytes())
    assert marker.exists()


def test_not_a_state_dict_is_a_named_error(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="list.pth"):
        torch_checkpoints.read_state_dict(str(path))
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        torch_checkpoints.read_state_dict(str(path))


def test_torch_is_imported_only_to_convert_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match="needs torch"):
        torch_checkpoints.read_state_dict(str(tmp_path / "any.pth"))
