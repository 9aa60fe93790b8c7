"""Seeded trained-looking BatchNorm statistics for the benchmarks that time random-weight models.

Fresh BatchNorm layers (gamma 1, beta 0, mean 0, variance 1) fold into zero
biases, which TensorFlow's graph optimizer then deletes: that would time a
graph no trained model has. `inference_speed.py` and both sides of
`peer_pytorch.py` draw from this one distribution. NumPy only at import: the
PyTorch side's venv has no TensorFlow.
"""

import numpy as np

SEED = 17


def draw(channels, rng):
    """{"gamma", "beta", "moving_mean", "moving_variance"}: float32 (channels,) each, from `rng`."""
    return {
        "gamma": rng.uniform(0.5, 1.5, channels).astype(np.float32),
        "beta": rng.normal(0, 0.1, channels).astype(np.float32),
        "moving_mean": rng.normal(0, 0.1, channels).astype(np.float32),
        "moving_variance": rng.uniform(0.5, 1.5, channels).astype(np.float32),
    }


def assign_to_keras(model, seed=SEED):
    """Gives every BatchNormalization of a Keras `model` (nested ones too) statistics from `draw`."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            for name, value in draw(layer.moving_mean.shape[0], rng).items():
                variable = getattr(layer, name, None)
                if variable is not None:
                    variable.assign(value)
