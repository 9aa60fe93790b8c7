"""Input checks of the metrics (keras_emlnet.metrics._checks): what passes, what raises, and why."""

import numpy as np
import pytest

from keras_emlnet.metrics import _checks as inputs


def test_float_map_converts_without_checking_values():
    out = inputs.float_map(np.array([[1, 2], [3, 4]], dtype=np.uint8), "m")
    assert out.dtype == np.float64 and out.flags.c_contiguous
    assert np.isnan(inputs.float_map([[np.nan]], "m")).all()  # values are require_finite's job
    with pytest.raises(ValueError, match="m must be a 2-D"):
        inputs.float_map(np.zeros(3), "m")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_require_finite_checks_values_when_a_reduction_is_not_finite(bad):
    array = np.array([[1.0, bad], [3.0, 4.0]])
    with pytest.raises(ValueError, match="saliency_map contains NaN or infinite values"):
        inputs.require_finite(array, "saliency_map", array.sum())
    with pytest.raises(ValueError, match="NaN or infinite"):
        inputs.require_finite(array, "saliency_map", array.min(), array.max())


def test_require_finite_accepts_finite_values_whose_sum_overflows():
    huge = np.full((2, 2), 1e308)
    with np.errstate(over="ignore"):
        total = huge.sum()
    assert not np.isfinite(total)
    inputs.require_finite(huge, "m", total)  # no error: every value is finite


@pytest.mark.parametrize(
    "fixations",
    [
        np.array([[0, 1], [1, 0]], dtype=bool),
        np.array([[0, 1], [2, 0]], dtype=np.uint8),
        np.array([[0, 1], [3, 0]], dtype=np.int64),
        np.array([[0.0, 0.5], [1.0, -0.0]], dtype=np.float32),
        np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float16),
        np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.longdouble),
    ],
)
def test_fixation_points_of_every_dtype(fixations):
    shape, indices = inputs.fixation_points(fixations, "fixation_map")
    assert shape == (2, 2)
    np.testing.assert_array_equal(indices, [1, 2])


@pytest.mark.parametrize(
    "fixations, message",
    [
        (np.array([[0.0, np.nan]]), "NaN or infinite"),
        (np.array([[0.0, np.inf]]), "NaN or infinite"),  # +inf is a "fixation": checked there
        (np.array([[0.0, -np.inf]]), "NaN or infinite"),
        (np.array([[-1.0, np.inf]]), "NaN or infinite"),  # as before: finiteness is checked first
        (np.array([[0.0, -1.0]]), "non-negative"),
        (np.array([[0, -1]], dtype=np.int8), "non-negative"),
        (np.array([["a"]]), "numeric"),
        (np.zeros((2, 2, 2)), "2-D"),
    ],
)
def test_bad_fixation_maps_raise(fixations, message):
    with pytest.raises(ValueError, match=f"fixation_map.*{message}|{message}"):
        inputs.fixation_points(fixations, "fixation_map")


def test_map_at_checks_the_original_before_resizing():
    array, checked = inputs.map_at(np.ones((4, 6)), (8, 12), "saliency_map")
    assert array.shape == (8, 12) and checked
    array, checked = inputs.map_at(np.ones((4, 6)), (4, 6), "saliency_map")
    assert array.shape == (4, 6) and not checked  # the caller checks with its own reductions
    with pytest.raises(ValueError, match="saliency_map contains NaN"):
        inputs.map_at(np.full((4, 6), np.nan), (8, 12), "saliency_map")


def test_checked_map_computes_and_checks_its_reductions_once():
    checked = inputs.CheckedMap(np.arange(12.0).reshape(3, 4), "saliency_map")
    assert checked.prepare() == (66.0, (0.0, 11.0))
    checked.array[0, 0] = np.nan  # cached: the map is not read again
    assert checked.total == 66.0 and checked.extremes == (0.0, 11.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_checked_map_names_a_bad_map(bad):
    values = np.ones((3, 4))
    values[1, 2] = bad
    with pytest.raises(ValueError, match="density_map contains NaN or infinite values"):
        inputs.CheckedMap(values, "density_map").prepare()
    # a map resized to the truth's shape is checked before resizing
    with pytest.raises(ValueError, match="baseline_map contains NaN or infinite values"):
        inputs.CheckedMap(values, "baseline_map", shape=(6, 8))
