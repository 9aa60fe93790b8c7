"""keras-emlnet: EML-NET saliency prediction in TensorFlow 2 / Keras 3.

The public API is imported lazily so that `import keras_emlnet` stays cheap
(TensorFlow is only loaded when a model-building name is first used).
"""

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # the lazy names below, for type checkers and IDEs; nothing is imported at run time
    from keras_emlnet import losses
    from keras_emlnet import metrics
    from keras_emlnet.losses import EMLLoss
    from keras_emlnet.metrics import suite as metric_suite  # the old name of metrics.suite
    from keras_emlnet.models.backbones import BACKBONES
    from keras_emlnet.models.backbones import get_backbone
    from keras_emlnet.models.decoder import build_decoder
    from keras_emlnet.models.emlnet import EMLNet
    from keras_emlnet.models.encoder import SaliencyEncoder
    from keras_emlnet.models.encoder import build_encoder
    from keras_emlnet.models.extractor import build_feature_extractor
    from keras_emlnet.models.saving import load_model

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

# a literal list, so linters see the lazy names as exported (tests check it equals _LAZY's)
__all__ = [
    "BACKBONES",
    "EMLLoss",
    "EMLNet",
    "SaliencyEncoder",
    "build_decoder",
    "build_encoder",
    "build_feature_extractor",
    "get_backbone",
    "load_model",
    "losses",
    "metric_suite",
    "metrics",
    "__version__",
]


def __getattr__(name):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'keras_emlnet' has no attribute {name!r}")
    module = importlib.import_module(f".{module_name}", __name__)
    value = module if name in _MODULES else getattr(module, name)
    globals()[name] = value
    return value
