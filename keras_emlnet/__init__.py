"""keras-emlnet: EML-NET saliency prediction in TensorFlow 2 / Keras 3.

The public API is imported lazily so that `import keras_emlnet` stays cheap
(TensorFlow is only loaded when a model-building name is first used).
"""

import importlib

__version__ = "0.1.0"

# public name -> module (relative to this package) that defines it, or is it
_LAZY = {
    "build_encoder": "models.encoder",
    "SaliencyEncoder": "models.encoder",
    "BACKBONES": "models.backbones",
    "get_backbone": "models.backbones",
    "build_feature_extractor": "models.extractor",
    "build_decoder": "models.decoder",
    "EMLNet": "models.emlnet",
    "EMLLoss": "losses",
    "load_model": "models.saving",
    "metrics": "metrics",
    "metric_suite": "metrics.suite",
    "losses": "losses",
}

# names that are modules themselves (`keras_emlnet.metric_suite` is the old name of metrics.suite)
_MODULES = {"metrics", "metric_suite", "losses"}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'keras_emlnet' has no attribute {name!r}")
    module = importlib.import_module(f".{module_name}", __name__)
    value = module if name in _MODULES else getattr(module, name)
    globals()[name] = value
    return value
