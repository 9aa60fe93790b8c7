"""Tests for keras_emlnet/losses.py against a NumPy transcription of the paper's eqs. 1, 4, 5."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_emlnet import losses
from keras_emlnet.metrics import keras as keras_metrics

PAPER_EPSILON = 1e-6  # ε of eq. 1 in the authors' released code


# --- NumPy reference, float64, written from the paper's equations ---------------------------


def np_zscore(x):
    return (x - x.mean()) / x.std(ddof=1)


def np_kld(density, prediction, epsilon=PAPER_EPSILON):
    """Eq. 1: sum Q log(ε + Q / (ε + P)), both maps normalised to sum 1 (zero stays zero)."""
    q = density / density.sum()
    p = prediction / prediction.sum() if prediction.sum() > 0 else np.zeros_like(prediction)
    return float(np.sum(q * np.log(epsilon + q / (epsilon + p))))


def np_cc_prime(density, prediction):
    """Eq. 4: 1 - Pearson's correlation."""
    return 1.0 - float(np.corrcoef(prediction.ravel(), density.ravel())[0, 1])


def np_nss_prime(fixations, prediction):
    """Eq. 5: mean over fixated pixels of z(fixation map) - z(prediction)."""
    fixated = fixations > 0
    return float(np.mean(np_zscore(fixations)[fixated] - np_zscore(prediction)[fixated]))


# --- synthetic data ---------------------------------------------------------------------------


def blur(maps, sigma):
    """Separable Gaussian blur of (B, H, W) maps with zero padding."""
    radius = int(3 * sigma)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="same"), 1, maps)
    return np.apply_along_axis(lambda col: np.convolve(col, kernel, mode="same"), 2, out)


def make_targets(rng, batch, height, width, fixations_per_map=8):
    """Random (B, H, W, 2) targets: binary fixations and their blurred, normalised density."""
    fixations = np.zeros((batch, height, width))
    for b in range(batch):
        rows = rng.integers(0, height, fixations_per_map)
        cols = rng.integers(0, width, fixations_per_map)
        fixations[b, rows, cols] = 1.0
    density = blur(fixations, 1.5) + 1e-4
    density /= density.sum(axis=(1, 2), keepdims=True)
    return np.stack([density, fixations], axis=-1).astype("float32")


def make_blob_dataset(seed, num_samples, size=16):
    """Images with one bright blob at a random place; people fixate around the blob."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    images = rng.normal(0.0, 0.1, (num_samples, size, size, 3))
    fixations = np.zeros((num_samples, size, size))
    for i in range(num_samples):
        r, c = rng.uniform(3, size - 3, 2)
        images[i] += np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / 4.0)[..., None]
        fr = np.clip(np.round(rng.normal(r, 1.0, 6)), 0, size - 1).astype(int)
        fc = np.clip(np.round(rng.normal(c, 1.0, 6)), 0, size - 1).astype(int)
        fixations[i, fr, fc] = 1.0
    density = blur(fixations, 1.0) + 1e-6
    density /= density.sum(axis=(1, 2), keepdims=True)
    y_true = np.stack([density, fixations], axis=-1).astype("float32")
    return images.astype("float32"), y_true


def tiny_saliency_model(seed=0, size=16):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="tiny_conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="tiny_conv2")(x)
    outputs = keras.layers.Conv2D(1, 1, activation="softplus", name="tiny_map")(x)
    return keras.Model(inputs, outputs, name="tiny_saliency")


@pytest.fixture
def batch(rng):
    y_true = make_targets(rng, 4, 12, 20)
    y_pred = (rng.gamma(2.0, 1.0, (4, 12, 20, 1))).astype("float32")
    return y_true, y_pred


# --- values -----------------------------------------------------------------------------------


def test_terms_match_numpy_equations(batch):
    y_true, y_pred = batch
    kld = losses.kl_divergence(y_true, y_pred).numpy()
    cc = losses.cc_dissimilarity(y_true, y_pred).numpy()
    nss = losses.nss_dissimilarity(y_true, y_pred).numpy()
    for i in range(len(y_true)):
        density, fixations, prediction = y_true[i, ..., 0], y_true[i, ..., 1], y_pred[i, ..., 0]
        np.testing.assert_allclose(kld[i], np_kld(density, prediction), rtol=1e-5)
        np.testing.assert_allclose(cc[i], np_cc_prime(density, prediction), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(nss[i], np_nss_prime(fixations, prediction), rtol=1e-5, atol=1e-6)
    assert kld.dtype == cc.dtype == nss.dtype == np.float32


def test_eml_loss_is_batch_mean_of_summed_terms(batch):
    y_true, y_pred = batch
    expected = [
        np_kld(t[..., 0], p[..., 0]) + np_cc_prime(t[..., 0], p[..., 0]) + np_nss_prime(t[..., 1], p[..., 0])
        for t, p in zip(y_true.astype("float64"), y_pred.astype("float64"))
    ]
    per_sample = losses.EMLLoss(reduction=None)(y_true, y_pred).numpy()
    np.testing.assert_allclose(per_sample, expected, rtol=1e-5)
    np.testing.assert_allclose(float(losses.EMLLoss()(y_true, y_pred)), np.mean(expected), rtol=1e-5)
    weights = np.array([1.0, 0.0, 2.0, 1.0], "float32")
    np.testing.assert_allclose(
        float(losses.EMLLoss()(y_true, y_pred, sample_weight=weights)),
        np.sum(weights * np.array(expected)) / len(expected),
        rtol=1e-5,
    )


def test_perfect_predictions_reach_the_minimum_of_each_term(batch):
    y_true, y_pred = batch
    density = y_true[..., :1]
    # KLD and CC' are scale invariant in the prediction: any multiple of the density is perfect.
    # (ε makes eq. 1 slightly negative there: q / (ε + q) < 1.)
    perfect_kld = losses.kl_divergence(y_true, 250.0 * density).numpy()
    expected = [np_kld(d, d) for d in density[..., 0].astype("float64")]
    np.testing.assert_allclose(perfect_kld, expected, rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(perfect_kld, 0.0, atol=1e-3)
    assert np.all(losses.kl_divergence(y_true, y_pred).numpy() > perfect_kld + 0.1)
    np.testing.assert_allclose(losses.cc_dissimilarity(y_true, 250.0 * density).numpy(), 0.0, atol=1e-5)
    # No map beats the fixation map itself at NSS, so NSS' >= 0 with 0 for (an affine image of) it.
    fixation_like = 3.0 * y_true[..., 1:] + 0.5
    np.testing.assert_allclose(losses.nss_dissimilarity(y_true, fixation_like).numpy(), 0.0, atol=1e-5)
    assert np.all(losses.nss_dissimilarity(y_true, y_pred).numpy() > 0.1)


@pytest.mark.parametrize("scale", [1e-4, 1e3])
def test_loss_is_invariant_to_the_prediction_scale(batch, scale):
    y_true, y_pred = batch
    loss = losses.EMLLoss(reduction=None)
    np.testing.assert_allclose(loss(y_true, scale * y_pred).numpy(), loss(y_true, y_pred).numpy(), rtol=1e-5)


def test_bad_layout_names_the_tensor():
    with pytest.raises(ValueError, match="y_true must be"):
        losses.EMLLoss()(np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8, 1)))
    with pytest.raises(ValueError, match="y_pred must be"):
        losses.kl_divergence(np.zeros((2, 8, 8, 2)), np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="width"):
        losses.cc_dissimilarity(np.zeros((2, 8, 8, 2)), np.zeros((2, 8, 6, 1)))


# --- degenerate samples: finite values and gradients --------------------------------------------


def _value_and_gradient(fn, y_true, y_pred):
    prediction = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        value = fn(tf.constant(y_true), prediction)
        total = tf.reduce_sum(value)
    return value.numpy(), tape.gradient(total, prediction).numpy()


TERMS = {
    "kld": losses.kl_divergence,
    "cc": losses.cc_dissimilarity,
    "nss": losses.nss_dissimilarity,
    "eml": losses.EMLLoss(),
}


@pytest.mark.parametrize("case", ["constant", "all_zero", "large_constant", "no_fixations", "zero_density"])
@pytest.mark.parametrize("term", sorted(TERMS))
def test_degenerate_samples_give_finite_values_and_gradients(rng, case, term):
    y_true = make_targets(rng, 3, 24, 32)
    y_pred = rng.gamma(2.0, 1.0, (3, 24, 32, 1)).astype("float32")
    if case == "constant":
        y_pred[1] = 0.3
    elif case == "all_zero":
        y_pred[1] = 0.0
    elif case == "large_constant":  # float32 rounding leaves noise around the mean here
        y_pred[1] = 7.77
    elif case == "no_fixations":
        y_true[1, ..., 1] = 0.0
    else:
        y_true[1, ..., 0] = 0.0
    value, gradient = _value_and_gradient(TERMS[term], y_true, y_pred)
    assert np.all(np.isfinite(value)), value
    assert np.all(np.isfinite(gradient))
    # The other samples' gradients are untouched by the degenerate one.
    assert np.all(np.abs(gradient[0]) > 0) or term == "nss"


def test_degenerate_values_match_their_definitions(rng):
    y_true = make_targets(rng, 3, 12, 16)
    y_pred = rng.gamma(2.0, 1.0, (3, 12, 16, 1)).astype("float32")
    y_pred[0] = 0.3  # constant: z(prediction) = 0, so CC' = 1 and NSS' = mean of z(F) at fixations
    y_pred[1] = 0.0  # all zero: P stays zero, KLD = sum Q log(ε + Q / ε)
    y_true[2, ..., 1] = 0.0  # no fixations: NSS' = 0
    cc = losses.cc_dissimilarity(y_true, y_pred).numpy()
    nss = losses.nss_dissimilarity(y_true, y_pred).numpy()
    kld = losses.kl_divergence(y_true, y_pred).numpy()
    np.testing.assert_allclose(cc[:2], 1.0, atol=1e-6)
    fixations = y_true[0, ..., 1].astype("float64")
    np.testing.assert_allclose(nss[0], np.mean(np_zscore(fixations)[fixations > 0]), rtol=1e-5)
    np.testing.assert_allclose(kld[1], np_kld(y_true[1, ..., 0].astype("float64"), np.zeros((12, 16))), rtol=1e-5)
    assert nss[2] == 0.0
    per_sample = losses.EMLLoss(reduction=None)(y_true, y_pred).numpy()
    np.testing.assert_allclose(per_sample[2], kld[2] + cc[2], rtol=1e-6)
    np.testing.assert_allclose(float(losses.EMLLoss()(y_true, y_pred)), per_sample.mean(), rtol=1e-6)


def test_constant_prediction_at_full_resolution_standardizes_to_zero():
    y_true = np.zeros((1, 480, 640, 2), "float32")
    y_true[0, 100:140, 200:260, 0] = 1.0 / (40 * 60)
    y_true[0, 120, 230, 1] = 1.0
    cc = losses.cc_dissimilarity(y_true, np.full((1, 480, 640, 1), 7.77, "float32")).numpy()
    np.testing.assert_allclose(cc, 1.0, atol=1e-6)


# --- mixed precision --------------------------------------------------------------------------


@pytest.fixture
def mixed_bfloat16():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    yield
    keras.config.set_dtype_policy(previous)


def test_bfloat16_predictions_give_a_float32_loss(batch, mixed_bfloat16):
    y_true, y_pred = batch
    y_pred_bf16 = tf.cast(y_pred, tf.bfloat16)
    loss = losses.EMLLoss()(y_true, y_pred_bf16)
    assert loss.dtype == tf.float32
    # Same value as the float32 loss of the (exactly representable) bfloat16-rounded maps.
    rounded = tf.cast(y_pred_bf16, tf.float32)
    np.testing.assert_allclose(float(loss), float(losses.EMLLoss()(y_true, rounded)), rtol=1e-6)
    for fn in (losses.kl_divergence, losses.cc_dissimilarity, losses.nss_dissimilarity):
        assert fn(tf.cast(y_true, tf.bfloat16), y_pred_bf16).dtype == tf.float32

    model = tiny_saliency_model(size=12)
    assert model.layers[-1].compute_dtype == "bfloat16"
    images = np.random.default_rng(0).normal(size=(2, 12, 12, 3)).astype("float32")
    with tf.GradientTape() as tape:
        value = losses.EMLLoss()(y_true[:2, :, :12], model(images))
    gradients = tape.gradient(value, model.trainable_variables)
    assert value.dtype == tf.float32
    assert all(np.all(np.isfinite(g.numpy())) for g in gradients)


# --- serialization ----------------------------------------------------------------------------


def test_config_round_trip(batch):
    y_true, y_pred = batch
    loss = losses.EMLLoss(epsilon=1e-5, reduction="sum", name="custom_eml")
    config = loss.get_config()
    assert config == {"name": "custom_eml", "reduction": "sum", "epsilon": 1e-5}
    restored = losses.EMLLoss.from_config(config)
    assert restored.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(revived, losses.EMLLoss) and revived.get_config() == config
    np.testing.assert_allclose(float(revived(y_true, y_pred)), float(loss(y_true, y_pred)))
    assert keras.saving.get_registered_object("keras_emlnet>nss_dissimilarity") is losses.nss_dissimilarity


def test_keras_file_round_trip_of_a_compiled_model(tmp_path):
    images, y_true = make_blob_dataset(seed=3, num_samples=8)
    model = tiny_saliency_model()
    model.compile(
        optimizer="adam",
        loss=losses.EMLLoss(epsilon=1e-5),
        metrics=[keras_metrics.NSS(), keras_metrics.CC(), keras_metrics.KLD(), keras_metrics.SIM()],
    )
    model.fit(images, y_true, batch_size=4, epochs=1, verbose=0)
    before = model.evaluate(images, y_true, batch_size=4, verbose=0, return_dict=True)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, losses.EMLLoss) and loaded.loss.epsilon == 1e-5
    after = loaded.evaluate(images, y_true, batch_size=4, verbose=0, return_dict=True)
    assert set(after) == {"loss", "nss", "cc", "kld", "sim"}
    for name, value in before.items():
        np.testing.assert_allclose(after[name], value, rtol=1e-5, err_msg=name)


# --- training ---------------------------------------------------------------------------------


def test_training_with_eml_loss_lowers_it_on_held_out_data():
    train_images, train_true = make_blob_dataset(seed=0, num_samples=64)
    val_images, val_true = make_blob_dataset(seed=1, num_samples=32)
    model = tiny_saliency_model(seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=losses.EMLLoss())
    train_before = model.evaluate(train_images, train_true, batch_size=32, verbose=0)
    val_before = model.evaluate(val_images, val_true, batch_size=32, verbose=0)
    model.fit(train_images, train_true, batch_size=16, epochs=10, shuffle=True, verbose=0)
    train_after = model.evaluate(train_images, train_true, batch_size=32, verbose=0)
    val_after = model.evaluate(val_images, val_true, batch_size=32, verbose=0)
    assert np.isfinite(train_after)
    assert train_after < 0.8 * train_before, (train_before, train_after)
    # Fixations follow the blob, wherever it is: lowering held-out loss needs the input.
    assert val_after < 0.8 * val_before, (val_before, val_after)
