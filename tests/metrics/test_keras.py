"""Tests for keras_emlnet/metrics/keras.py against NumPy transcriptions of the MIT benchmark's MATLAB."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_emlnet import losses
from keras_emlnet.metrics import keras as keras_metrics

MATLAB_EPS = 2.0**-52


# --- NumPy references, float64, transcribed from cvzoya/saliency code_forMetrics -------------


def np_nss(prediction, fixations):
    """NSS.m: z-score with std (N - 1), mean at logical(fixationMap)."""
    if not fixations.any():
        return float("nan")  # MATLAB: mean of an empty selection
    z = (prediction - prediction.mean()) / prediction.std(ddof=1)
    return float(z[fixations != 0].mean())


def np_cc(prediction, density):
    """CC.m: corr2 of the two maps."""
    return float(np.corrcoef(prediction.ravel(), density.ravel())[0, 1])


def np_kld(prediction, density):
    """KLdiv.m: both maps to sum 1 unless all zero, eps = 2^-52, natural log."""
    p = prediction / prediction.sum() if prediction.any() else prediction
    q = density / density.sum() if density.any() else density
    return float(np.sum(q * np.log(MATLAB_EPS + q / (p + MATLAB_EPS))))


def np_sim(prediction, density):
    """similarity.m: min-max to [0, 1], then to sum 1, then histogram intersection."""

    def normalise(m):
        if not m.any():
            return m
        m = (m - m.min()) / (m.max() - m.min())
        return m / m.sum()

    return float(np.minimum(normalise(prediction), normalise(density)).sum())


REFERENCES = {
    "NSS": lambda t, p: np_nss(p, t[..., 1]),
    "CC": lambda t, p: np_cc(p, t[..., 0]),
    "KLD": lambda t, p: np_kld(p, t[..., 0]),
    "SIM": lambda t, p: np_sim(p, t[..., 0]),
}


def make_batch(rng, batch, height=12, width=20):
    fixations = (rng.random((batch, height, width)) < 0.05).astype("float64")
    fixations[:, 3, 4] = 1.0  # every sample has at least one fixation
    density = rng.gamma(1.0, 1.0, (batch, height, width)) * (1.0 + 5.0 * fixations)
    density /= density.sum(axis=(1, 2), keepdims=True)
    y_true = np.stack([density, fixations], axis=-1).astype("float32")
    y_pred = rng.gamma(2.0, 1.0, (batch, height, width, 1)).astype("float32")
    return y_true, y_pred


def per_sample_reference(name, y_true, y_pred):
    return np.array(
        [REFERENCES[name](t, p[..., 0]) for t, p in zip(y_true.astype("float64"), y_pred.astype("float64"))]
    )


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_one_batch_matches_the_numpy_reference(rng, name):
    y_true, y_pred = make_batch(rng, 4)
    metric = getattr(keras_metrics, name)()
    metric.update_state(y_true, y_pred)
    expected = per_sample_reference(name, y_true, y_pred).mean()
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-5, atol=1e-6)
    assert metric.result().dtype == "float32"


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_accumulates_the_mean_over_all_samples_seen(rng, name):
    first, second = make_batch(rng, 3), make_batch(rng, 5)
    second[0][1, ..., 1] = 0.0  # a sample without fixations: NSS leaves it out
    metric = getattr(keras_metrics, name)()
    metric.update_state(*first)
    metric.update_state(*second)
    values = np.concatenate([per_sample_reference(name, *first), per_sample_reference(name, *second)])
    if name == "NSS":
        assert np.isnan(values[4])  # MATLAB's NSS of an empty fixation map
        values = np.delete(values, 4)
    np.testing.assert_allclose(float(metric.result()), values.mean(), rtol=1e-5, atol=1e-6)

    metric.reset_state()
    assert float(metric.result()) == 0.0
    metric.update_state(*second)
    np.testing.assert_allclose(
        float(metric.result()), np.nanmean(per_sample_reference(name, *second)), rtol=1e-5, atol=1e-6
    )


def test_sample_weight_weights_the_per_sample_mean(rng):
    y_true, y_pred = make_batch(rng, 4)
    weights = np.array([1.0, 0.0, 3.0, 0.5], "float32")
    for name in REFERENCES:
        metric = getattr(keras_metrics, name)()
        metric.update_state(y_true, y_pred, sample_weight=weights)
        values = per_sample_reference(name, y_true, y_pred)
        np.testing.assert_allclose(
            float(metric.result()), np.sum(weights * values) / weights.sum(), rtol=1e-5, err_msg=name
        )


def test_degenerate_predictions_stay_finite(rng):
    y_true, y_pred = make_batch(rng, 3)
    y_pred[0] = 0.4  # constant: MATLAB gives NaN for NSS, CC and SIM; these give 0
    y_pred[1] = 0.0  # all zero: MATLAB keeps the map zero; KLD is finite and equals the reference
    results = {}
    for name in REFERENCES:
        metric = getattr(keras_metrics, name)()
        metric.update_state(y_true[:1], y_pred[:1])
        results[name] = float(metric.result())
        assert np.isfinite(results[name]), name
    assert results["NSS"] == 0.0 and results["CC"] == 0.0 and results["SIM"] == 0.0
    kld = keras_metrics.KLD()
    kld.update_state(y_true[1:2], y_pred[1:2])
    np.testing.assert_allclose(float(kld.result()), np_kld(y_pred[1, ..., 0], y_true[1, ..., 0]), rtol=1e-5)
    nss = keras_metrics.NSS()
    y_true[:, ..., 1] = 0.0
    nss.update_state(y_true, y_pred)
    assert float(nss.result()) == 0.0 and float(nss.count) == 0.0  # nothing to average


def test_bfloat16_predictions_are_scored_in_float32(rng):
    y_true, y_pred = make_batch(rng, 2)
    y_pred_bf16 = tf.cast(y_pred, tf.bfloat16)
    rounded = tf.cast(y_pred_bf16, tf.float32).numpy()
    for name in REFERENCES:
        metric = getattr(keras_metrics, name)()
        metric.update_state(y_true, y_pred_bf16)
        assert metric.result().dtype == "float32"
        expected = per_sample_reference(name, y_true, rounded).mean()
        np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-5, err_msg=name)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_config_round_trip(rng, name):
    metric = getattr(keras_metrics, name)(name=f"val_{name.lower()}")
    config = metric.get_config()
    assert config == {"name": f"val_{name.lower()}", "dtype": "float32"}
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(revived) is type(metric) and revived.get_config() == config
    y_true, y_pred = make_batch(rng, 2)
    metric.update_state(y_true, y_pred)
    revived.update_state(y_true, y_pred)
    assert float(revived.result()) == float(metric.result())


def test_compiled_model_reports_them_and_survives_a_keras_file(tmp_path, rng):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 20, 3))
    hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="probe_conv")(inputs)
    outputs = keras.layers.Conv2D(1, 1, activation="softplus", name="probe_map")(hidden)
    model = keras.Model(inputs, outputs)
    metrics = [keras_metrics.NSS(), keras_metrics.CC(), keras_metrics.KLD(), keras_metrics.SIM()]
    model.compile(optimizer="sgd", loss=losses.kl_divergence, metrics=metrics)
    images = rng.normal(size=(6, 12, 20, 3)).astype("float32")
    y_true, _ = make_batch(rng, 6)
    history = model.fit(images, y_true, batch_size=3, epochs=1, verbose=0)
    assert {"nss", "cc", "kld", "sim"} <= set(history.history)

    reported = model.evaluate(images, y_true, batch_size=3, verbose=0, return_dict=True)
    predictions = model.predict(images, verbose=0)
    for name in REFERENCES:
        expected = per_sample_reference(name, y_true, predictions).mean()
        np.testing.assert_allclose(reported[name.lower()], expected, rtol=1e-4, err_msg=name)

    path = tmp_path / "probe.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.loss is losses.kl_divergence
    again = loaded.evaluate(images, y_true, batch_size=3, verbose=0, return_dict=True)
    for name, value in reported.items():
        np.testing.assert_allclose(again[name], value, rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("constant", [0.0, 0.4, 37.5])
def test_evaluate_is_finite_for_constant_and_zero_predictions(generated_datasets, constant):
    # Regression: a spatially constant map (e.g. resnet50 at 32x32, whose
    # 1x1 final feature map upsamples to a constant) gave NaN SIM in
    # model.evaluate while eager calls gave 0: in the traced graph Grappler
    # folded the min-max epsilon away. The loss and every metric must be
    # finite and equal the NumPy references in graph mode too.
    from keras_emlnet.data import build_dataset

    dataset = build_dataset("salicon", generated_datasets["salicon"], "train", input_size=(32, 48), batch_size=4)
    images, y_true = (tensor.numpy() for tensor in next(iter(dataset)))
    inputs = keras.Input((32, 48, 3))
    # A real layer whose output is exactly `constant` everywhere (zero kernel).
    outputs = keras.layers.Conv2D(1, 1, kernel_initializer="zeros",
                                  bias_initializer=keras.initializers.Constant(constant))(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(loss=losses.EMLLoss(), metrics=[getattr(keras_metrics, name)() for name in sorted(REFERENCES)])
    reported = model.evaluate(images, y_true, batch_size=len(images), verbose=0, return_dict=True)

    assert all(np.isfinite(value) for value in reported.values()), reported
    # z(constant) = 0: NSS and CC are 0; min-max(constant) = 0: SIM is 0.
    assert reported["nss"] == 0.0 and reported["cc"] == 0.0 and reported["sim"] == 0.0
    y_pred = np.full(images.shape[:3] + (1,), constant, np.float32)
    np.testing.assert_allclose(reported["kld"], per_sample_reference("KLD", y_true, y_pred).mean(), rtol=1e-5)
    # EMLLoss = KLD(eps 1e-6) + (1 - 0) + NSS of the fixation map itself (z(prediction) = 0).
    expected_loss = []
    for density, fixations in zip(y_true[..., 0].astype("float64"), y_true[..., 1].astype("float64")):
        p = np.full_like(density, 1.0 / density.size) if constant else np.zeros_like(density)
        q = density / density.sum()
        kld = np.sum(q * np.log(losses.KLD_EPSILON + q / (losses.KLD_EPSILON + p)))
        expected_loss.append(kld + 1.0 + np_nss(fixations, fixations))
    np.testing.assert_allclose(reported["loss"], np.mean(expected_loss), rtol=1e-5)
