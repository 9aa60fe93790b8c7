"""Saliency metrics: the MIT saliency benchmark's nine, and the Keras training metrics.

`keras_emlnet.metrics.auc_judd(...)` etc. are the NumPy benchmark metrics (see
`fixation`, `auc`, `density`, `emd`); `score_all` scores all nine on one pair.
The in-graph Keras metrics for `model.fit` live in `keras_emlnet.metrics.keras`
(imported on its own: it loads TensorFlow).
"""

from keras_emlnet.metrics.fixation import *  # noqa: F401,F403
from keras_emlnet.metrics.fixation import (  # noqa: F401
    DEFAULT_N_SPLITS,
    DEFAULT_SEED,
    DEFAULT_STEP_SIZE,
    EMD_DOWNSIZE,
    EPS,
    JUDD_JITTER_DIVISOR,
    info_gain_of,
    nss_of,
    pair_metrics_of,
)
from keras_emlnet.metrics.suite import METRIC_NAMES, score_all  # noqa: F401

__all__ = ["auc_judd", "auc_borji", "auc_shuffled", "nss", "cc", "kld", "sim", "emd", "info_gain", "score_all"]
