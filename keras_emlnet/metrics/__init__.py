"""Saliency metrics with the MIT saliency benchmark's semantics (cvzoya/saliency, code_forMetrics).

The nine benchmark metrics, one module per family:
- `auc`: `auc_judd`, `auc_borji`, `auc_shuffled` (their negative sampling in `auc_sampling`,
  AUC-Judd's threshold counts in `auc_thresholds`);
- `fixation`: `nss`, `info_gain` (scores read at the fixated pixels);
- `density`: `cc`, `kld`, `sim` (prediction against the fixation density);
- `earth_mover`: `emd` and its exact transport solver;
and `suite.score_all`, all of them on one pair with the shared work done once. `imresize` is
MATLAB's resize the benchmark applies; `_checks` and `_reductions` are private helpers.
The package exports only these; import anything else from its family's module.

The Keras training metrics (NSS, CC, KLD, SIM in-graph, for `model.fit`) are
`keras_emlnet.metrics.keras`, imported on its own because it loads TensorFlow. They sit here
and the EML loss in `keras_emlnet.losses` because that is the split Keras itself uses
(`keras.metrics` / `keras.losses`): a training metric is looked for among the metrics, and the
loss module holds only what `compile(loss=...)` takes.

Conventions of the NumPy metrics: each function takes 2-D arrays of any numeric (or bool)
dtype, computes in float64 and returns a float. As in the MATLAB code, the saliency map is
first resized to the ground truth's size with MATLAB's `imresize` (`keras_emlnet.metrics.imresize`:
bicubic, antialiased, replicated borders); to score many metrics on one pair at another size,
resize once with `imresize(saliency, output_shape=truth.shape)` and pass that. Where MATLAB
returns NaN (constant map, no fixations, ...) so do we; input MATLAB would turn into garbage
(wrong dimensionality, empty, NaN or infinite values, negative fixation maps, mismatched
shapes, a complex KL divergence) raises ValueError saying what is wrong.

Randomness (AUC-Judd's jitter, AUC-Borji's and shuffled AUC's negative draws) comes from
`numpy.random.default_rng(seed)`; `seed=None` means the fixed DEFAULT_SEED, so every call is
reproducible. `n_splits=None` gives the exact expectation over the random splits.

Deliberate differences from the MATLAB code (all documented where they apply):
- random streams: same distributions as MATLAB's rand/randi/randperm, not its generator;
- EMD is the exact transport optimum; FastEMD rounds masses and distances to 1e-6 of their
  maxima first, so MATLAB's EMD differs by ~1e-6 relative;
- integer inputs are used as float64 values; MATLAB's imresize would round and saturate an
  integer-class map it resizes (im2double's 1/255 scaling does not change any score);
- float rounding differs (~1e-15 relative): sums run chunk by chunk
  (`keras_emlnet.metrics._reductions`); KLD and SIM fold their normalising divisions into one
  factor per map (see their docstrings); SIM and IG take sum(x - min(x)) as
  sum(x) - n*min(x) unless that loses digits (< ~1e-12 relative).
"""

# Besides __all__, also public here as in the flat module this package replaced: the sampling
# defaults, EPS, EMD_DOWNSIZE, METRIC_NAMES and the cores on checked maps that score_all shares.
from keras_emlnet.metrics.auc import (  # noqa: F401
    DEFAULT_N_SPLITS,
    DEFAULT_SEED,
    DEFAULT_STEP_SIZE,
    JUDD_JITTER_DIVISOR,
    auc_borji,
    auc_judd,
    auc_shuffled,
)
from keras_emlnet.metrics.density import EPS, cc, kld, pair_metrics_of, sim  # noqa: F401
from keras_emlnet.metrics.earth_mover import EMD_DOWNSIZE, emd  # noqa: F401
from keras_emlnet.metrics.fixation import info_gain, info_gain_of, nss, nss_of  # noqa: F401
from keras_emlnet.metrics.suite import METRIC_NAMES, score_all  # noqa: F401

__all__ = ["auc_judd", "auc_borji", "auc_shuffled", "nss", "cc", "kld", "sim", "emd", "info_gain", "score_all"]
