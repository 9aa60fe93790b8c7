"""keras-emlnet: EML-NET saliency prediction in TensorFlow 2 / Keras 3.

The public API is imported lazily so that `import keras_emlnet` stays cheap
(TensorFlow is only loaded when a model-building name is first used).
"""

import importlib

__version__ = "0.1.0"

# public name -> module (relative to this package) that defines it
_LAZY = {
    "build_encoder": "encoder",
    "BACKBONES": "backbones",
    "get_backbone": "backbones",
    "build_feature_extractor": "extractor",
    "build_decoder": "decoder",
    "EMLNet": "emlnet",
    "EMLLoss": "losses",
    "load_model": "saving",
    "metrics": "metrics",
    "metric_suite": "metric_suite",
    "losses": "losses",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'keras_emlnet' has no attribute {name!r}")
    module = importlib.import_module(f".{module_name}", __name__)
    value = module if name == module_name else getattr(module, name)
    globals()[name] = value
    return value
