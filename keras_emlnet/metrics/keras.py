"""Keras metrics NSS, CC, KLD and SIM for monitoring saliency models in `fit`.

They take the loss's layout (`y_true` (B, H, W, 2): density, fixations;
`y_pred` (B, H, W, 1)) and follow the MIT saliency benchmark's definitions
(cvzoya/saliency, code_forMetrics) on model-size maps: no resizing, std
with N - 1, KLD with eps = 2^-52, SIM with min-max then sum normalisation.
For reported numbers use the NumPy `keras_emlnet.metrics` at the original
image size; these are float32 and meant for training curves.

Each metric is the mean of per-sample values over all samples seen since
the last `reset_state` (optionally weighted by `sample_weight`). Where
MATLAB returns NaN these stay finite so that logs remain readable: a
constant prediction scores CC 0, NSS 0 and SIM 0, and a sample without
fixations is left out of the NSS mean (it has no NSS).
"""

import keras
from keras import ops

from keras_emlnet.losses import split_targets, standardize, to_distribution

# MATLAB's `eps` (2^-52), the ε of the benchmark's KLdiv.m.
MATLAB_EPS = 2.0**-52

_SPATIAL_AXES = (1, 2)


class _PerSampleMean(keras.metrics.Metric):
    """Averages a per-sample saliency score over every sample seen."""

    def __init__(self, name, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def per_sample(self, density, fixations, prediction):
        """Returns (values, valid): float32 (B,) scores and a 0/1 (B,) mask."""
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        values, valid = self.per_sample(*split_targets(y_true, y_pred))
        weights = valid
        if sample_weight is not None:
            sample_weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
            weights = weights * sample_weight
        # Samples left out must not bring a NaN in through 0 * NaN.
        values = ops.where(weights > 0, values, ops.zeros_like(values))
        self.total.assign_add(ops.cast(ops.sum(values * weights), self.dtype))
        self.count.assign_add(ops.cast(ops.sum(weights), self.dtype))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)


@keras.saving.register_keras_serializable(package="keras_emlnet")
class NSS(_PerSampleMean):
    """Normalized scanpath saliency: mean z-scored prediction at fixations.

    Formula:

    ```
    z(x) = (x - mean(x)) / std(x)          # std with N - 1
    nss = mean of z(y_pred) over pixels where fixations > 0
    ```

    Samples without fixations are not counted.
    """

    def __init__(self, name="nss", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def per_sample(self, density, fixations, prediction):
        fixated = ops.cast(fixations > 0, "float32")
        count = ops.sum(fixated, axis=_SPATIAL_AXES)
        total = ops.sum(fixated * standardize(prediction), axis=_SPATIAL_AXES)
        return ops.divide_no_nan(total, count), ops.cast(count > 0, "float32")


@keras.saving.register_keras_serializable(package="keras_emlnet")
class CC(_PerSampleMean):
    """Pearson's linear correlation between prediction and density map.

    Formula:

    ```
    cc = sum_i z(y_pred)_i * z(density)_i / (N - 1)
    ```
    """

    def __init__(self, name="cc", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def per_sample(self, density, fixations, prediction):
        count = ops.sum(ops.ones_like(density), axis=_SPATIAL_AXES)
        products = ops.sum(standardize(prediction) * standardize(density), axis=_SPATIAL_AXES)
        values = products / ops.maximum(count - 1.0, 1.0)
        return values, ops.ones_like(values)


@keras.saving.register_keras_serializable(package="keras_emlnet")
class KLD(_PerSampleMean):
    """KL divergence of the predicted distribution from the density map.

    Formula:

    ```
    Q = density / sum(density);  P = y_pred / sum(y_pred)
    kld = sum_i Q_i * log(eps + Q_i / (eps + P_i))      # eps = 2^-52
    ```

    Negative predictions are clipped to 0 first; an all-zero map stays zero.
    """

    def __init__(self, name="kld", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def per_sample(self, density, fixations, prediction):
        q = to_distribution(density)
        p = to_distribution(ops.maximum(prediction, 0.0))
        values = ops.sum(q * ops.log(MATLAB_EPS + q / (MATLAB_EPS + p)), axis=_SPATIAL_AXES)
        return values, ops.ones_like(values)


def _min_max_distribution(maps):
    low = ops.min(maps, axis=_SPATIAL_AXES, keepdims=True)
    high = ops.max(maps, axis=_SPATIAL_AXES, keepdims=True)
    # A constant map scales to zeros by a safe division, not by adding a tiny
    # epsilon to the range: in a traced graph (fit/evaluate) Grappler's
    # constant folding reassociates `(high - low) + eps` into
    # `(high + eps) - low`, where eps vanishes next to the map's values, so a
    # constant map gave 0/0 = NaN there while eager calls gave 0.
    return to_distribution(ops.divide_no_nan(maps - low, high - low))


@keras.saving.register_keras_serializable(package="keras_emlnet")
class SIM(_PerSampleMean):
    """Similarity (histogram intersection) of prediction and density map.

    Formula:

    ```
    d(x) = m / sum(m),  m = (x - min(x)) / (max(x) - min(x))
    sim = sum_i min(d(y_pred)_i, d(density)_i)
    ```
    """

    def __init__(self, name="sim", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def per_sample(self, density, fixations, prediction):
        values = ops.sum(
            ops.minimum(_min_max_distribution(prediction), _min_max_distribution(density)),
            axis=_SPATIAL_AXES,
        )
        return values, ops.ones_like(values)
