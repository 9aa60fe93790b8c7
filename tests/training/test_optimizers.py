"""TorchSGD against PyTorch's SGD and a hand-computed update; the step schedule."""

import keras
import numpy as np
import pytest

from keras_emlnet.training.optimizers import TorchSGD, step_decay_learning_rate


def _run_keras(optimizer, w0, grads, learning_rates):
    variable = keras.Variable(w0)
    optimizer.build([variable])
    for gradient, lr in zip(grads, learning_rates):
        optimizer.learning_rate = lr
        optimizer.apply([gradient], [variable])
    return variable.numpy()


def test_hand_computed_two_steps():
    # w=1, g=0.5, lr=0.1, momentum=0.9, wd=0.1 (PyTorch: g += wd*w; b = m*b + g; w -= lr*b)
    # step 1: g' = 0.5 + 0.1*1 = 0.6, b = 0.6, w = 1 - 0.06 = 0.94
    # step 2: g' = 0.5 + 0.1*0.94 = 0.594, b = 0.9*0.6 + 0.594 = 1.134, w = 0.94 - 0.1134 = 0.8266
    w = _run_keras(TorchSGD(0.1, momentum=0.9, weight_decay=0.1), np.array([1.0], "float32"),
                   [np.array([0.5], "float32")] * 2, [0.1, 0.1])
    np.testing.assert_allclose(w, [0.8266], rtol=1e-6)


def test_matches_torch_sgd_across_a_learning_rate_drop(rng):
    torch = pytest.importorskip("torch")
    w0 = rng.normal(size=(3, 4)).astype("float32")
    grads = [rng.normal(size=(3, 4)).astype("float32") for _ in range(6)]
    learning_rates = [0.1, 0.1, 0.1, 0.01, 0.01, 0.01]  # the drop must shrink the buffer's step at once

    param = torch.nn.Parameter(torch.tensor(w0))
    reference = torch.optim.SGD([param], lr=0.1, momentum=0.9, weight_decay=1e-2)
    for gradient, lr in zip(grads, learning_rates):
        for group in reference.param_groups:
            group["lr"] = lr
        param.grad = torch.tensor(gradient)
        reference.step()

    ours = _run_keras(TorchSGD(0.1, momentum=0.9, weight_decay=1e-2), w0, grads, learning_rates)
    np.testing.assert_allclose(ours, param.detach().numpy(), rtol=1e-5, atol=1e-6)

    # Keras's own SGD(weight_decay=...) decays outside the momentum buffer and
    # keeps lr-scaled velocity: not the released code's optimiser.
    keras_sgd = _run_keras(keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-2), w0, grads, learning_rates)
    assert np.abs(keras_sgd - param.detach().numpy()).max() > 1e-3


def test_constraints_still_apply():
    # The decoder's fusing conv is NonNeg: the constraint must survive our update.
    layer = keras.layers.Dense(1, use_bias=False, kernel_constraint=keras.constraints.NonNeg())
    layer.build((None, 2))
    layer.kernel.assign(np.array([[0.01], [1.0]], "float32"))
    optimizer = TorchSGD(1.0, momentum=0.9, weight_decay=0.0)
    optimizer.apply([np.array([[1.0], [0.5]], "float32")], [layer.kernel])
    np.testing.assert_allclose(layer.kernel.numpy(), [[0.0], [0.5]])


def test_config_round_trip_and_saved_state(tmp_path):
    optimizer = TorchSGD(0.05, momentum=0.8, weight_decay=3e-4, name="sgd")
    clone = TorchSGD.from_config(optimizer.get_config())
    assert (clone.momentum, clone.l2_weight_decay) == (0.8, 3e-4)
    assert np.isclose(float(clone.learning_rate), 0.05)

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(np.ones((4, 3), "float32"), np.zeros((4, 2), "float32"), epochs=2, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects: TorchSGD is registered
    assert isinstance(loaded.optimizer, TorchSGD)
    assert loaded.optimizer.l2_weight_decay == 3e-4
    for saved, restored in zip(optimizer.momentum_buffers, loaded.optimizer.momentum_buffers):
        np.testing.assert_array_equal(saved.numpy(), restored.numpy())


def test_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="momentum"):
        TorchSGD(0.1, momentum=1.5)
    with pytest.raises(ValueError, match="weight_decay"):
        TorchSGD(0.1, weight_decay=-1.0)


def test_step_decay_encoder_and_decoder_recipes():
    encoder = [step_decay_learning_rate(epoch, 0.01, (5,)) for epoch in range(10)]
    np.testing.assert_allclose(encoder, [0.01] * 5 + [0.001] * 5)
    decoder = [step_decay_learning_rate(epoch, 0.01, (3,)) for epoch in range(5)]
    np.testing.assert_allclose(decoder, [0.01] * 3 + [0.001] * 2)
    # the released code's `lr * 0.1 ** (epoch // 5)` over its 10 epochs
    np.testing.assert_allclose(encoder, [0.01 * 0.1 ** (epoch // 5) for epoch in range(10)])


def test_step_decay_several_boundaries_and_none():
    rates = [step_decay_learning_rate(epoch, 1.0, (2, 4), decay_factor=0.5) for epoch in range(6)]
    np.testing.assert_allclose(rates, [1, 1, 0.5, 0.5, 0.25, 0.25])
    assert step_decay_learning_rate(7, 0.1, ()) == 0.1
    with pytest.raises(ValueError, match="epoch"):
        step_decay_learning_rate(-1, 0.1, (5,))
