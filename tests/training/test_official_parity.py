"""Training parity with the official code (issue 15): a few steps of the released `train_resnet.py` loop
(official EMLLoss, torch.optim.SGD momentum 0.9 wd 1e-4, lr 0.01, BatchNorm in train mode, fixed
batches) and this project's encoder training (`training.fit`, TorchSGD, EMLLoss) on the converted
released encoder give the same losses and the same updated weights.

The trajectories are compared in float64 on both sides (the Keras encoder copied into the float64
policy; EMLLoss itself computes in float32): in float32 the gradients of this ReLU/max-pool/BatchNorm
network are not reproducible beyond ~1e-2 of a tensor's largest entry — activations within rounding
of a ReLU's zero or of a max-pool tie send gradient down one path in one framework and not in the
other; PyTorch's own float32 gradients differ from its float64 ones by up to 3 % (layer2.0.conv2,
measured) — so float32 trajectories separate at ~1e-3 in the loss after 3 steps. What float32 must
match is the first train-mode forward (same weights): its loss within 1e-5."""

import copy
import dataclasses

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from keras_emlnet import load_model  # noqa: E402
from keras_emlnet.losses import EMLLoss  # noqa: E402
from keras_emlnet.models import released, torch_checkpoints  # noqa: E402
from keras_emlnet.models.extractor import _copy_with_policy  # noqa: E402
from keras_emlnet.training import fit as fit_lib  # noqa: E402
from keras_emlnet.training.encoder_stage import ENCODER_RECIPE  # noqa: E402
from tests.conftest import RELEASED_TEST_SIZE  # noqa: E402

STEPS, BATCH = 3, 2
MOMENTUM = 0.1  # PyTorch BatchNorm momentum (Keras 0.9)


class OfficialEMLLoss(torch.nn.Module):
    """EMLLoss.py's Loss, as released (per-sample KL + CC + NSS terms, averaged over the batch)."""

    eps = 1e-6

    def kl(self, p, s):
        p, s = p / p.sum(), s / s.sum()
        return (s * torch.log(s / (p + self.eps) + self.eps)).sum()

    def cc(self, p, s):
        p, s = (p - p.mean()) / p.std(), (s - s.mean()) / s.std()
        return 1 - (p * s).sum() / torch.sqrt((p * p).sum() * (s * s).sum())

    def nss(self, p, f):
        ref = (f - f.mean()) / f.std()
        p = (p - p.mean()) / p.std()
        return (ref * f - p * f).sum() / f.sum()

    def forward(self, pred, fix, smap):
        total = 0
        for p, f, s in zip(pred, fix, smap):
            total = total + self.kl(p, s) + self.cc(p, s) + self.nss(p, f)
        return total / pred.size(0)


def _batches():
    rng = np.random.default_rng(21)
    h, w = RELEASED_TEST_SIZE
    rows, cols = np.mgrid[0:h, 0:w]
    batches = []
    for _ in range(STEPS):
        images = rng.uniform(0, 255, (BATCH, h, w, 3)).astype(np.float32)
        targets = np.zeros((BATCH, h, w, 2), np.float32)
        for b in range(BATCH):
            cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
            targets[b, ..., 0] = np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * 10.0 ** 2))
            targets[b, rng.integers(0, h, 12), rng.integers(0, w, 12), 1] = 1.0
        batches.append((images, targets))
    return batches


def _official_run(model, batches):
    """train_resnet.py's train() in float64: model.train(), an SGD step per batch; losses, BN batch variances."""
    model.double().train()
    optimizer = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=1e-4)
    criterion = OfficialEMLLoss()
    batch_vars = {}  # BN module name -> [biased batch variance per step]
    hooks = [module.register_forward_hook(
        lambda m, inputs, out, name=name: batch_vars.setdefault(name, []).append(
            inputs[0].detach().var(dim=(0, 2, 3), unbiased=False).numpy()))
        for name, module in model.named_modules() if isinstance(module, torch.nn.BatchNorm2d)]
    losses = []
    for images, targets in batches:
        x = torch.from_numpy(images).double().permute(0, 3, 1, 2).div(255)
        smap = torch.from_numpy(targets[..., 0:1]).double().permute(0, 3, 1, 2)
        fix = torch.from_numpy(targets[..., 1:2]).double().permute(0, 3, 1, 2)
        loss = criterion(model(x), fix, smap)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    for hook in hooks:
        hook.remove()
    return losses, batch_vars


class _BatchLosses(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.means = []  # Keras logs the running mean of the epoch's batch losses

    def on_train_batch_end(self, batch, logs=None):
        self.means.append(float(logs["loss"]))


def test_first_train_mode_forward_matches_in_float32(released_checkpoints, released_small):
    (imagenet, _, _), _ = released_checkpoints
    official = copy.deepcopy(imagenet).train()
    images, targets = _batches()[0]
    with torch.no_grad():
        pred = official(torch.from_numpy(images).permute(0, 3, 1, 2).div(255))
        want = OfficialEMLLoss()(pred, torch.from_numpy(targets[..., 1:2]).permute(0, 3, 1, 2),
                                 torch.from_numpy(targets[..., 0:1]).permute(0, 3, 1, 2)).item()
    encoder = load_model(released_small[1]["imagenet"])
    got = float(EMLLoss()(targets, encoder(images, training=True)))
    assert got == pytest.approx(want, rel=1e-5)
    # train mode differs from inference mode here (batch statistics): the check has teeth
    assert float(EMLLoss()(targets, encoder(images, training=False))) != pytest.approx(want, rel=1e-3)


# ~30 s on an idle 2-core CPU (a float64 ResNet-50 at a small input, 3 steps): in the default suite,
# so the loss, the optimiser, BatchNorm and the data layout cannot drift from the official code.
def test_encoder_training_steps_match_the_official_loop(released_checkpoints, released_small, tmp_path):
    import tensorflow as tf

    (imagenet, _, _), _ = released_checkpoints
    official = copy.deepcopy(imagenet)
    initial_var = {name: m.running_var.double().numpy().copy() for name, m in official.named_modules()
                   if isinstance(m, torch.nn.BatchNorm2d)}
    batches = _batches()
    official_losses, batch_vars = _official_run(official, batches)

    images = np.concatenate([b[0] for b in batches])
    targets = np.concatenate([b[1] for b in batches])
    data = tf.data.Dataset.from_tensor_slices((images, targets)).batch(BATCH)
    config = dataclasses.replace(ENCODER_RECIPE, epochs=1, batch_size=BATCH, lr_decay_epochs=(),
                                 input_size=RELEASED_TEST_SIZE)
    assert (config.learning_rate, config.momentum, config.weight_decay) == (0.01, 0.9, 1e-4)
    record = _BatchLosses()
    result = fit_lib.fit(lambda: _copy_with_policy(load_model(released_small[1]["imagenet"]), "float64"), data,
                         None, config, tmp_path / "run", loss=EMLLoss(), callbacks=[record])
    # per-step losses from Keras's running means (EMLLoss computes in float32)
    means = np.array(record.means)
    keras_losses = means * np.arange(1, STEPS + 1) - np.concatenate([[0.0], means[:-1] * np.arange(1, STEPS)])
    np.testing.assert_allclose(keras_losses, official_losses, rtol=1e-5)
    assert len(set(np.round(official_losses, 3))) == STEPS  # the steps changed the model

    # every updated weight; BatchNorm moving statistics as each framework defines them
    model = result.model
    state = {k: v.numpy() for k, v in official.state_dict().items() if not k.endswith("num_batches_tracked")}
    start = {k: v.double().numpy() for k, v in imagenet.state_dict().items()}
    moved = 0
    for layer_name, path in released.encoder_module_paths("imagenet").items():
        layer = model.get_layer(layer_name)
        for key, variable in zip(torch_checkpoints.layer_torch_keys(layer, path), layer.weights):
            got = variable.numpy()
            assert got.dtype == np.float64, key
            want = torch_checkpoints.to_keras_layout(state[key], got.shape)
            if key.endswith("running_var"):
                # Keras averages the biased batch variance, PyTorch the unbiased one: same formula, that input
                name = key[: -len(".running_var")]
                want = initial_var[name] * (1 - MOMENTUM) ** STEPS + sum(
                    MOMENTUM * (1 - MOMENTUM) ** (STEPS - 1 - k) * v for k, v in enumerate(batch_vars[name]))
                want = torch_checkpoints.to_keras_layout(want, got.shape)
            initial = torch_checkpoints.to_keras_layout(start[key], got.shape)
            update = float(np.abs(want - initial).max())
            # within 1e-4 of each tensor's update (the loss and its gradient are float32)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * update + 1e-12, err_msg=key)
            moved += update > 1e-9
    assert moved > 300  # nearly all of the 300+ weight tensors changed
