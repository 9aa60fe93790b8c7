"""keras_emlnet.evaluation.evaluate: sAUC's other images and other map, and the loop's numbers against
`keras_emlnet.metrics` called directly on independently computed maps."""

import numpy as np
import pytest

from keras_emlnet.evaluation import evaluate as evaluation
from keras_emlnet.evaluation.columns import METRIC_KEYS
from keras_emlnet.evaluation.evaluate import EvalConfig, choose_other_indices, other_fixation_map


def test_other_indices_exclude_the_image_and_are_seeded():
    chosen = choose_other_indices(50, 7, count=10, seed=3)
    assert len(chosen) == 10 == len(set(chosen)) and 7 not in chosen
    assert chosen == sorted(chosen) == choose_other_indices(50, 7, count=10, seed=3)
    assert chosen != choose_other_indices(50, 7, count=10, seed=4)
    assert chosen != choose_other_indices(50, 8, count=10, seed=3)
    assert choose_other_indices(4, 2, count=10) == [0, 1, 3]  # fewer images than asked
    with pytest.raises(ValueError):
        choose_other_indices(4, 4)


def test_other_map_scales_fixations_of_other_sized_images():
    # a 10x20 image's corner pixels land on the corners of a 5x10 frame;
    # pixel (4, 7) has its centre at (4.5, 7.5) -> (2.25, 3.75) -> (2, 3)
    points = [(np.array([0, 9, 4]), np.array([0, 19, 7]), (10, 20)), (np.array([1]), np.array([2]), (5, 10))]
    other = other_fixation_map((5, 10), points)
    expected = np.zeros((5, 10), dtype=bool)
    expected[[0, 4, 2, 1], [0, 9, 3, 2]] = True
    np.testing.assert_array_equal(other, expected)


def test_row_names_and_config_checks():
    assert EvalConfig("salicon", "d").row_names() == ["model", "center bias"]
    assert EvalConfig("salicon", "d", baseline_maps="/x/SAM/").row_names()[-1] == "SAM"
    with pytest.raises(ValueError, match="differ"):
        EvalConfig("salicon", "d", model_name="center bias").row_names()


@pytest.fixture(scope="module")
def mit1003(tmp_path_factory):
    from keras_emlnet.data import generate_dataset

    root = str(tmp_path_factory.mktemp("mit1003"))
    generate_dataset("mit1003", root, 7, seed=5, image_size=(48, 64), num_observers=4)
    return root


@pytest.fixture(scope="module")
def model():
    from keras_emlnet.testing import tiny_emlnet

    return tiny_emlnet((24, 32), output_mode="probability", seed=1)


def _reference_rows(model, samples, seed, others_count, folder=None):
    """Per image and row, the nine metrics computed directly (the evaluation loop not involved)."""
    from keras_emlnet import metrics
    from keras_emlnet.evaluation.baselines import center_bias_map
    from keras_emlnet.models.postprocess import tf_to_original_size

    points = [(*np.nonzero(s.fixation_original), s.fixation_original.shape) for s in samples]
    expected = []
    for i, sample in enumerate(samples):
        shape = sample.fixation_original.shape
        model_map = model.predict(sample.image_model[None], verbose=0)[0]
        model_map = tf_to_original_size(model_map, shape, "pad_to_4_3", "probability").numpy()[..., 0]
        center = center_bias_map(shape)
        others = np.delete(np.arange(len(samples)), i)
        chosen = np.random.default_rng([seed, i]).choice(
            others, size=min(others_count, len(others)), replace=False)
        other = np.zeros(shape, dtype=bool)
        for j in chosen:
            rows, cols, (h, w) = points[j]
            other[np.floor((rows + 0.5) * shape[0] / h).astype(int),
                  np.floor((cols + 0.5) * shape[1] / w).astype(int)] = True
        maps = [model_map, center] + ([folder[sample.name]] if folder else [])
        s = seed * 1_000_003 + i
        fix, density = sample.fixation_original, sample.density_original
        for m in maps:
            expected.append([
                metrics.auc_judd(m, fix, seed=s), metrics.sim(m, density), metrics.emd(m, density),
                metrics.auc_borji(m, fix, seed=s), metrics.auc_shuffled(m, fix, other, seed=s),
                metrics.cc(m, density), metrics.nss(m, fix), metrics.kld(m, density),
                metrics.info_gain(m, fix, center),
            ])
    return np.array(expected)


def test_evaluate_equals_metrics_called_directly(model, mit1003, tmp_path):
    from keras_emlnet.data import iter_eval_samples
    from keras_emlnet.inference.predictor import predictor_from_keras_model

    samples = list(iter_eval_samples("mit1003", mit1003, "all", input_size=(24, 32)))
    folder = {}
    for k, sample in enumerate(samples):  # another "model": a folder of .npy maps
        folder[sample.name] = np.random.default_rng(k).random(sample.fixation_original.shape)
        np.save(str(tmp_path / f"{sample.name}.npy"), folder[sample.name])
    config = EvalConfig("mit1003", mit1003, split="all", model_name="tiny", baseline_maps=str(tmp_path),
                        baseline_name="random", shuffled_others=3, seed=11, batch_size=4)
    seen = []
    results = evaluation.evaluate(predictor_from_keras_model(model), config,
                                  make_progress=lambda total: seen.append(total) or seen.append)
    assert seen[0] == len(samples) and sum(seen[1:]) == len(samples)
    assert results.rows == ["tiny", "center bias", "random"]
    actual = np.array([[r[k] for k in METRIC_KEYS] for r in results.per_image])
    np.testing.assert_allclose(actual, _reference_rows(model, samples, 11, 3, folder), rtol=1e-6, atol=1e-9)
    center = [r for r in results.summary if r["row"] == "center bias"][0]
    assert center["info_gain"] == 0.0  # IG's baseline is the center bias itself
    model_row = results.summary[0]
    assert model_row["cc"] == pytest.approx(np.mean([r["cc"] for r in results.per_image if r["row"] == "tiny"]))
    assert results.per_category is None
