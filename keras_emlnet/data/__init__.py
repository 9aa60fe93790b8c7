"""Datasets (SALICON, MIT1003, CAT2000): readers, splits, generator and the tf.data pipeline.

Names are imported lazily: the readers and the generator are NumPy/PIL code,
and only the pipeline (`build_dataset`, `build_train_val`) needs TensorFlow.
"""

import importlib

# public name -> module (relative to this package) that defines it
_LAZY = {
    "build_dataset": "pipeline",
    "build_train_val": "pipeline",
    "iter_eval_samples": "pipeline",
    "EvalSample": "pipeline",
    "BadDataReport": "records",
    "BadSampleError": "records",
    "generate_dataset": "synthetic_dataset",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'keras_emlnet.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value
