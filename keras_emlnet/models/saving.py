"""Loading keras-emlnet models saved as `.keras` in a fresh process.

Keras rebuilds a saved model from the registered classes of its layers, and a
class is registered only once its module has been imported. `import
keras_emlnet` is lazy (it imports no TensorFlow), so `load_model` imports
every module that registers a class first: encoders, EMLNet models, models
compiled with EMLLoss, the Keras metrics or TorchSGD all load without
custom_objects.
"""

import importlib
import os

import keras

# Modules holding `@keras.saving.register_keras_serializable` classes.
SERIALIZABLE_MODULES = (
    "keras_emlnet.models.preprocessing",
    "keras_emlnet.models.resizing",
    "keras_emlnet.models.extractor",
    "keras_emlnet.models.emlnet",
    "keras_emlnet.losses",
    "keras_emlnet.metrics.keras",
    "keras_emlnet.training.optimizers",
)


def register_serializables():
    """Imports every module that registers a keras-emlnet class with Keras."""
    for name in SERIALIZABLE_MODULES:
        importlib.import_module(name)


def load_model(path, *, compile=False, **kwargs):
    """Loads a `.keras` encoder or EMLNet saved by keras-emlnet.

    Args:
        path: the `.keras` file.
        compile: restore the saved loss, metrics and optimizer (default False:
            inference and decoder training need none of them).
        **kwargs: passed to `keras.saving.load_model`.

    Returns:
        The keras.Model.

    Raises:
        FileNotFoundError: `path` does not exist (the message names it).
    """
    if not os.path.isfile(os.fspath(path)):
        raise FileNotFoundError(f"no model file {os.fspath(path)!r}")
    register_serializables()
    return keras.saving.load_model(path, compile=compile, **kwargs)
