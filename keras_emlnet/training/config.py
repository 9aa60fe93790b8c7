"""The settings of a training run, and the error a rerun with other settings raises.

`TrainConfig` holds every setting `keras_emlnet.training.fit.fit` trains
with; a run records it in its workdir's config.json (`to_dict`), and a rerun
that would resume the run with other settings raises `ConfigMismatchError`.
"""

import dataclasses
from typing import Optional

from keras_emlnet.training import runtime


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every training setting; the defaults are the paper's encoder recipe.

    Attributes:
        epochs: epochs to train in all (a resumed run counts the earlier ones).
        batch_size: global batch size (split across tf.distribute replicas).
        learning_rate: learning rate of epoch 0 (see WORKSPACE.md for 0.01).
        lr_decay_epochs: 0-based epochs at which the rate is multiplied by
            `lr_decay_factor` (`optimizers.step_decay_learning_rate`): (5,)
            is "x0.1 after 5 epochs" (encoders), (3,) the decoder's "x0.1 at 3".
        lr_decay_factor: the multiplier at each decay epoch.
        momentum: SGD momentum (PyTorch semantics, `optimizers.TorchSGD`).
        weight_decay: L2 coefficient added to the gradient, as PyTorch SGD.
        mixed_precision: None (float32), "bfloat16" or "float16": the Keras
            mixed policy while building and training (variables stay float32,
            the loss is computed in float32; float16 adds loss scaling).
        distribution: None (default strategy), "mirrored" (all local GPUs, or
            the CPU) or "multi_worker" (MultiWorkerMirroredStrategy, TF_CONFIG).
        max_steps: stop after this many training batches in all (smoke runs).
        steps_per_epoch: steps per epoch (the training data is repeated);
            None: one pass over the data.
        validation_steps: validation batches per epoch; None: all.
        seed: seeds Python, NumPy and TF (model init) and the data order.
        input_size: (H, W) model input size.
    """

    epochs: int = 10
    batch_size: int = 8
    learning_rate: float = 0.01
    lr_decay_epochs: tuple = (5,)
    lr_decay_factor: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    mixed_precision: Optional[str] = None
    distribution: Optional[str] = None
    max_steps: Optional[int] = None
    steps_per_epoch: Optional[int] = None
    validation_steps: Optional[int] = None
    seed: int = 0
    input_size: tuple = (480, 640)

    def __post_init__(self):
        object.__setattr__(self, "lr_decay_epochs", tuple(int(e) for e in self.lr_decay_epochs))
        object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "steps_per_epoch", "validation_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"TrainConfig.{name} must be None or >= 1, got {value}")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainConfig.learning_rate must be > 0, got {self.learning_rate}")
        if not 0 < self.lr_decay_factor <= 1:
            raise ValueError(f"TrainConfig.lr_decay_factor must be in (0, 1], got {self.lr_decay_factor}")
        if list(self.lr_decay_epochs) != sorted(set(self.lr_decay_epochs)) or any(e < 1 for e in self.lr_decay_epochs):
            raise ValueError(
                f"TrainConfig.lr_decay_epochs must be increasing epochs >= 1, got {self.lr_decay_epochs}"
            )
        if self.mixed_precision not in runtime.MIXED_PRECISION_POLICIES:
            raise ValueError(
                f"TrainConfig.mixed_precision must be one of None, 'bfloat16', 'float16', got {self.mixed_precision!r}"
            )
        if self.distribution not in runtime.DISTRIBUTIONS:
            raise ValueError(
                f"TrainConfig.distribution must be one of {runtime.DISTRIBUTIONS}, got {self.distribution!r}"
            )
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ValueError(f"TrainConfig.input_size must be (H, W) with positive sizes, got {self.input_size}")

    def to_dict(self):
        """Returns the settings as a JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values):
        """Builds a TrainConfig from `to_dict()` output; unknown keys are an error."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig settings {unknown}; known: {sorted(known)}")
        return cls(**values)


class ConfigMismatchError(ValueError):
    """A workdir holds a run started with other settings than this one."""
