"""Loading keras-emlnet models saved as `.keras`, in any process: the one way to load one.

Keras rebuilds a saved model from the registered classes of its layers, and a
class is registered only once its module has been imported. `import
keras_emlnet` is lazy (it imports no TensorFlow), so `load_model` imports the
modules of every class a saved file may hold first: encoders, EMLNet models,
models compiled with EMLLoss, the Keras metrics or TorchSGD all load without
custom_objects.
"""

import importlib
import os

import keras

# Modules whose import registers every `@keras.saving.register_keras_serializable`
# class a keras-emlnet `.keras` file may hold. Each model module imports the
# modules of the layers it builds with.
SERIALIZABLE_MODULES = (
    "keras_emlnet.models.encoder",  # SaliencyEncoder, BackbonePreprocessing, BilinearResizeLike
    "keras_emlnet.models.emlnet",  # EMLNet, StopGradient (and the encoder's layers)
    "keras_emlnet.losses",  # a compiled model's loss
    "keras_emlnet.metrics.keras",  # ... its metrics
    "keras_emlnet.training.optimizers",  # ... its optimizer (TorchSGD)
    "keras_emlnet.inference.folding",  # InferenceBatchNormalization, in a saved folded inference copy
)


def register_serializables():
    """Imports every module that registers a keras-emlnet class with Keras."""
    for name in SERIALIZABLE_MODULES:
        importlib.import_module(name)


def load_model(path: str | os.PathLike, *, compile: bool = False, **kwargs) -> keras.Model:
    """Loads a `.keras` encoder or EMLNet saved by keras-emlnet.

    Args:
        path: the `.keras` file.
        compile: restore the saved loss, metrics and optimizer (default False:
            inference and decoder training need none of them).
        **kwargs: passed to `keras.saving.load_model`.

    Returns:
        The keras.Model (a `SaliencyEncoder`, an `EMLNet`, ...).

    Raises:
        FileNotFoundError: `path` does not exist (the message names it).
        ValueError: `path` is not a loadable `.keras` model (the message
            names it).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file {path!r}")
    register_serializables()
    try:
        return keras.saving.load_model(path, compile=compile, **kwargs)
    except Exception as error:  # Keras raises several types; name the file in one.
        raise ValueError(f"cannot load model {path}: {error}") from error
