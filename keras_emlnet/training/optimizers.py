"""The EML-NET optimiser and learning-rate schedule, with PyTorch's semantics.

The released EML-NET code trains with `torch.optim.SGD(params, lr,
momentum=0.9, weight_decay=1e-4)` and multiplies the learning rate by 0.1 every
`decay_epoch` epochs. Keras 3's `keras.optimizers.SGD(weight_decay=...)` is
not the same optimiser:

- Keras applies *decoupled* decay, `w -= lr * wd * w`, outside the momentum
  buffer; PyTorch adds `wd * w` to the gradient (L2), so the decay term is
  accumulated by momentum (about 1 / (1 - momentum) = 10x stronger in steady
  state with momentum 0.9).
- Keras keeps a velocity already scaled by the learning rate
  (`v = m * v - lr * g`); PyTorch keeps the buffer in gradient units and
  scales when stepping (`w -= lr * b`), so after a learning-rate drop PyTorch
  also shrinks the accumulated momentum at once; Keras does not.

`TorchSGD` reproduces PyTorch exactly (dampening 0, no Nesterov), so the
recipe's numbers mean what they meant in the released code.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_emlnet")
class TorchSGD(keras.optimizers.Optimizer):
    """SGD with momentum and L2 weight decay, as `torch.optim.SGD`.

    Formula:

    ```
    g = grad + weight_decay * w          # L2 term added to the gradient
    b = momentum * b + g                 # momentum buffer, gradient units
    w = w - learning_rate * b
    ```

    with `b` starting at 0 (PyTorch's first step `b = g` is the same thing).
    Weight decay applies to every trainable variable (the released code passes
    all parameters, BatchNorm ones included). Variable constraints, loss
    scaling and tf.distribute work as for any Keras optimiser.

    Args:
        learning_rate: float, schedule or callable, as for Keras optimisers.
        momentum: float in [0, 1].
        weight_decay: L2 coefficient >= 0 (added to the gradient, not
            decoupled).
        **kwargs: the other base-optimiser arguments (clipnorm, name, ...).
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, weight_decay=0.0, **kwargs):
        # The base class's own `weight_decay` is the decoupled kind: keep it off.
        super().__init__(learning_rate=learning_rate, weight_decay=None, **kwargs)
        momentum = float(momentum)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"TorchSGD momentum must be in [0, 1], got {momentum}")
        weight_decay = float(weight_decay)
        if weight_decay < 0.0:
            raise ValueError(f"TorchSGD weight_decay must be >= 0, got {weight_decay}")
        self.momentum = momentum
        self.l2_weight_decay = weight_decay

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentum_buffers = self.add_optimizer_variables(variables, "momentum_buffer")

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.l2_weight_decay:
            gradient = ops.add(gradient, ops.multiply(variable, ops.cast(self.l2_weight_decay, variable.dtype)))
        buffer = self.momentum_buffers[self._get_variable_index(variable)]
        self.assign(buffer, ops.add(ops.multiply(buffer, ops.cast(self.momentum, variable.dtype)), gradient))
        self.assign_sub(variable, ops.multiply(buffer, learning_rate))

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "weight_decay": self.l2_weight_decay})
        return config


def step_decay_learning_rate(epoch, base_learning_rate, decay_epochs, decay_factor=0.1):
    """The learning rate of a 0-based `epoch` under a step schedule.

    Formula:

    ```
    lr(epoch) = base_learning_rate * decay_factor ** #{b in decay_epochs : epoch >= b}
    ```

    Epochs are 0-based, as Keras counts them: `decay_epochs=(5,)` trains
    epochs 0-4 (the first five) at the base rate and epochs 5-9 at 0.1x,
    i.e. "x0.1 after epoch 5" in the paper's 1-based words and
    `lr * 0.1 ** (epoch // 5)` in the released code over 10 epochs.
    `(3,)` (the decoder recipe) drops for epochs 3 and 4 of 5.

    Args:
        epoch: 0-based epoch index.
        base_learning_rate: learning rate of epoch 0.
        decay_epochs: increasing 0-based epochs at which the rate is
            multiplied by `decay_factor` (empty: constant rate).
        decay_factor: multiplier applied at each boundary.

    Returns:
        The learning rate, a float.
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    drops = sum(1 for boundary in decay_epochs if epoch >= boundary)
    return float(base_learning_rate) * float(decay_factor) ** drops
