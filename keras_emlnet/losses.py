"""The EML-NET training loss (paper §3.5): KLD + CC' + NSS'.

Every function takes the package's target layout:

* `y_true` (B, H, W, 2): channel 0 the ground-truth density map, channel 1
  the binary fixation map (1 at fixated pixels);
* `y_pred` (B, H, W, 1): the predicted saliency map (non-negative, e.g. the
  ReLU map of an encoder; it need not sum to 1),

and returns one value per sample, shape (B,), always float32: inputs are cast
first, so a bfloat16 prediction under mixed precision is scored in float32.

Degenerate samples stay finite, and so do their gradients: an all-zero map
stays all zero when normalised to a distribution (as in the MIT benchmark's
`KLdiv.m`), a constant map standardises to zeros (its variance is floored,
never divided by zero or square-rooted at zero), and a sample without
fixations contributes 0 to NSS' (a safe division, not a `where` whose unused
branch could still carry NaN gradients).

The Keras metrics that monitor a fit on the same layout (NSS, CC, KLD, SIM) are
`keras_emlnet.metrics.keras`, built on `split_targets`, `standardize` and
`to_distribution` from here (the split of `keras.losses` and `keras.metrics`).
"""

import keras
from keras import ops

# Paper eq. 1 adds ε inside the log and to the prediction; the released
# PyTorch code (SenJia/EML-NET-Saliency, EMLLoss.py) uses 1e-6 for both.
KLD_EPSILON = 1e-6
# Added to a map's sum before dividing by it: keeps an all-zero map at zero
# (and its gradient finite) while being negligible for any real map.
SUM_EPSILON = 1e-12
# Variance floor for standardisation, relative to the map's mean square so
# that CC and NSS stay scale invariant; far below the variance of any real
# saliency map, it only matters for (nearly) constant maps.
VARIANCE_RELATIVE_EPSILON = 1e-8
# Absolute floor, only there so an all-zero map has a non-zero denominator.
VARIANCE_ABSOLUTE_EPSILON = 1e-30

_SPATIAL_AXES = (1, 2)


def split_targets(y_true, y_pred):
    """Splits the target layout into float32 (B, H, W) maps.

    Args:
        y_true: (B, H, W, 2) tensor, channel 0 density, channel 1 fixations.
        y_pred: (B, H, W, 1) tensor, the predicted saliency map.

    Returns:
        (density, fixations, prediction), each float32 of shape (B, H, W).

    Raises:
        ValueError: if a statically known shape does not fit the layout.
    """
    y_true = ops.cast(ops.convert_to_tensor(y_true), "float32")
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    if len(y_true.shape) != 4 or y_true.shape[-1] not in (None, 2):
        raise ValueError(
            "y_true must be (batch, height, width, 2): channel 0 the density map, "
            f"channel 1 the fixation map; got shape {tuple(y_true.shape)}"
        )
    if len(y_pred.shape) != 4 or y_pred.shape[-1] not in (None, 1):
        raise ValueError(
            f"y_pred must be (batch, height, width, 1); got shape {tuple(y_pred.shape)}"
        )
    for axis, label in ((1, "height"), (2, "width")):
        true_size, pred_size = y_true.shape[axis], y_pred.shape[axis]
        if true_size is not None and pred_size is not None and true_size != pred_size:
            raise ValueError(
                f"y_true and y_pred differ in {label}: {true_size} vs {pred_size} "
                f"(shapes {tuple(y_true.shape)} and {tuple(y_pred.shape)})"
            )
    return y_true[..., 0], y_true[..., 1], y_pred[..., 0]


def to_distribution(maps):
    """Divides each (H, W) map of a (B, H, W) batch by its sum.

    An all-zero map stays all zero (the MIT benchmark does the same).
    """
    total = ops.sum(maps, axis=_SPATIAL_AXES, keepdims=True)
    return maps / (total + SUM_EPSILON)


def standardize(maps):
    """Z-scores each (H, W) map of a (B, H, W) batch.

    The standard deviation uses N - 1 (as MATLAB's `std` and `torch.std`);
    the variance is floored (see `VARIANCE_RELATIVE_EPSILON`) so a constant
    map standardises to zeros with a finite gradient.
    """
    count = ops.sum(ops.ones_like(maps), axis=_SPATIAL_AXES, keepdims=True)
    # Shifting by one pixel first changes nothing mathematically (the shift
    # cancels, in the gradient too) but makes a constant map centre to exact
    # zeros; `x - mean(x)` leaves float32 rounding noise (~1e-6 relative at
    # 480x640) that the variance floor would blow up into visible z-scores.
    shifted = maps - maps[:, :1, :1]
    centred = shifted - ops.mean(shifted, axis=_SPATIAL_AXES, keepdims=True)
    variance = ops.sum(ops.square(centred), axis=_SPATIAL_AXES, keepdims=True) / ops.maximum(
        count - 1.0, 1.0
    )
    floor = (
        VARIANCE_RELATIVE_EPSILON * ops.mean(ops.square(maps), axis=_SPATIAL_AXES, keepdims=True)
        + VARIANCE_ABSOLUTE_EPSILON
    )
    return centred / ops.sqrt(variance + floor)


def _kld(density, prediction, epsilon):
    q = to_distribution(density)
    # Negative values would make the log's argument negative; clipping keeps
    # the term defined (encoder and decoder maps are ReLU outputs anyway).
    p = to_distribution(ops.maximum(prediction, 0.0))
    return ops.sum(q * ops.log(epsilon + q / (epsilon + p)), axis=_SPATIAL_AXES)


def _correlation(z_a, z_b):
    count = ops.sum(ops.ones_like(z_a), axis=_SPATIAL_AXES)
    return ops.sum(z_a * z_b, axis=_SPATIAL_AXES) / ops.maximum(count - 1.0, 1.0)


def _nss_gap(fixations, z_prediction):
    # Mean over fixations of z(fixation map) - z(prediction); 0 without fixations.
    gap = ops.sum(fixations * (standardize(fixations) - z_prediction), axis=_SPATIAL_AXES)
    return ops.divide_no_nan(gap, ops.sum(fixations, axis=_SPATIAL_AXES))


@keras.saving.register_keras_serializable(package="keras_emlnet")
def kl_divergence(y_true, y_pred, epsilon=KLD_EPSILON):
    """KL divergence of the predicted distribution from the ground truth (eq. 1).

    Formula:

    ```
    Q = density / sum(density)
    P = max(y_pred, 0) / sum(max(y_pred, 0))
    loss = sum_i Q_i * log(epsilon + Q_i / (epsilon + P_i))
    ```

    Args:
        y_true: (B, H, W, 2) targets; channel 0 (density) is used.
        y_pred: (B, H, W, 1) predicted saliency maps.
        epsilon: ε of eq. 1 (1e-6 as in the authors' released code).

    Returns:
        KLD per sample, float32 of shape (B,).
    """
    density, _, prediction = split_targets(y_true, y_pred)
    return _kld(density, prediction, epsilon)


@keras.saving.register_keras_serializable(package="keras_emlnet")
def cc_dissimilarity(y_true, y_pred):
    """CC' = 1 - CC, Pearson's correlation with the density map (eqs. 2, 4).

    Formula:

    ```
    z(x) = (x - mean(x)) / std(x)          # std with N - 1
    loss = 1 - sum_i z(y_pred)_i * z(density)_i / (N - 1)
    ```

    Args:
        y_true: (B, H, W, 2) targets; channel 0 (density) is used.
        y_pred: (B, H, W, 1) predicted saliency maps.

    Returns:
        CC' per sample in [0, 2], float32 of shape (B,); a constant
        prediction gives 1.
    """
    density, _, prediction = split_targets(y_true, y_pred)
    return 1.0 - _correlation(standardize(prediction), standardize(density))


@keras.saving.register_keras_serializable(package="keras_emlnet")
def nss_dissimilarity(y_true, y_pred):
    """NSS' = NSS of the fixation map itself minus NSS of the prediction (eqs. 3, 5).

    Formula:

    ```
    z(x) = (x - mean(x)) / std(x)          # std with N - 1
    loss = sum_i F_i * (z(F)_i - z(y_pred)_i) / sum_i F_i
    ```

    where F is the fixation map. Unlike -NSS, the term is bounded: by
    Cauchy-Schwarz no map has a higher NSS than F itself, so NSS' >= 0, with
    0 exactly when y_pred is a positive affine image of F.

    Args:
        y_true: (B, H, W, 2) targets; channel 1 (fixations) is used.
        y_pred: (B, H, W, 1) predicted saliency maps.

    Returns:
        NSS' per sample, float32 of shape (B,); exactly 0 (with a zero
        gradient) for a sample without fixations.
    """
    _, fixations, prediction = split_targets(y_true, y_pred)
    return _nss_gap(fixations, standardize(prediction))


@keras.saving.register_keras_serializable(package="keras_emlnet")
class EMLLoss(keras.losses.Loss):
    """The EML-NET loss: KLD + CC' + NSS' per sample, reduced over the batch.

    Formula:

    ```
    loss = kl_divergence + cc_dissimilarity + nss_dissimilarity
    ```

    A sample without fixations adds no NSS' term (its NSS' is 0); with the
    default reduction the batch loss is the mean of the per-sample sums.
    The loss always computes in float32 (its `dtype` is fixed), also under
    a mixed-precision policy.

    Args:
        epsilon: ε of the KLD term (eq. 1).
        reduction: Keras reduction over the batch; defaults to
            `"sum_over_batch_size"` (the mean over samples).
        name: name of the loss instance.
    """

    def __init__(self, epsilon: float = KLD_EPSILON, reduction: str = "sum_over_batch_size",
                 name: str = "eml_loss") -> None:
        super().__init__(name=name, reduction=reduction, dtype="float32")
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        density, fixations, prediction = split_targets(y_true, y_pred)
        z_prediction = standardize(prediction)
        return (
            _kld(density, prediction, self.epsilon)
            + (1.0 - _correlation(z_prediction, standardize(density)))
            + _nss_gap(fixations, z_prediction)
        )

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
