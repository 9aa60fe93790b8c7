"""Exact grid EMD against hand-computed plans and a linear-programming solve of the full problem."""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.optimize

from keras_emlnet.metrics import earth_mover
from keras_emlnet.metrics.earth_mover import grid_distances, grid_emd


def full_transport_lp(first, second):
    """FastEMD's problem as an LP over all pixel pairs (masses must be non-negative)."""
    p, q = first.ravel(), second.ravel()
    n = p.size
    cost = grid_distances(*first.shape).ravel()
    rows = np.zeros((2 * n, n * n))
    for i in range(n):
        rows[i, i * n : (i + 1) * n] = 1  # mass leaving pixel i
        rows[n + i, i::n] = 1  # mass arriving at pixel i
    result = scipy.optimize.linprog(cost, A_eq=rows, b_eq=np.concatenate([p, q]), bounds=(0, None))
    assert result.status == 0
    return result.fun


def test_grid_distances_are_euclidean_between_centres():
    d = grid_distances(2, 3)
    assert d[0, 5] == pytest.approx(np.sqrt(1 + 4))  # (0,0) -> (1,2)
    assert d[1, 3] == pytest.approx(np.sqrt(2))  # (0,1) -> (1,0)
    np.testing.assert_array_equal(d, d.T)
    assert not d.flags.writeable


@pytest.mark.parametrize(
    "first, second, expected",
    [
        ([[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]], np.sqrt(2)),  # corner to corner
        ([[0.5, 0.5, 0.0]], [[0.0, 0.5, 0.5]], 1.0),  # half the mass moves two pixels
        ([[0.25, 0.25], [0.25, 0.25]], [[0.25, 0.25], [0.25, 0.25]], 0.0),
        ([[0.6, 0.0, 0.4]], [[0.0, 1.0, 0.0]], 1.0),  # both ends move one pixel in
    ],
)
def test_hand_computed_plans(first, second, expected):
    assert grid_emd(np.array(first), np.array(second)) == pytest.approx(expected, abs=1e-12)


def test_signed_masses_move_only_the_difference():
    # FastEMD cancels shared mass first: a negative entry is extra demand at that pixel
    first = np.array([[0.7, -0.2, 0.5]])
    second = np.array([[0.0, 0.0, 1.0]])
    # net = [0.7, -0.2, -0.5]: 0.2 moves 1 pixel, 0.5 moves 2 pixels
    assert grid_emd(first, second) == pytest.approx(0.2 * 1 + 0.5 * 2, abs=1e-12)


def test_random_maps_match_linear_program():
    rng = np.random.default_rng(0)
    for shape in [(3, 4), (5, 7)]:
        first = rng.random(shape) ** 3
        second = rng.random(shape) ** 3
        first /= first.sum()
        second /= second.sum()
        assert grid_emd(first, second) == pytest.approx(full_transport_lp(first, second), rel=1e-9)
        assert grid_emd(second, first) == pytest.approx(grid_emd(first, second), rel=1e-12)


def test_unequal_masses_and_shapes_are_rejected():
    with pytest.raises(ValueError, match="equal total"):
        grid_emd(np.ones((2, 2)), 2 * np.ones((2, 2)))
    with pytest.raises(ValueError, match="one shape"):
        grid_emd(np.ones((2, 2)), np.ones((2, 3)))


def test_solver_import_leaves_array_frameworks_and_environment_alone():
    # POT would import TensorFlow / PyTorch on `import ot`; grid_emd must not pull them in.
    code = (
        "import os, sys, numpy as np\n"
        "from keras_emlnet.metrics.earth_mover import grid_emd\n"
        "assert grid_emd(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])) == 1.0\n"
        "assert 'ot' in sys.modules\n"
        "assert not {'tensorflow', 'torch', 'jax'} & set(sys.modules), sorted(sys.modules)\n"
        "assert not any(k.startswith('POT_BACKEND') for k in os.environ)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("POT_BACKEND")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_direct_solver_call_equals_pot_emd2(monkeypatch):
    # grid_emd calls POT's compiled solver the way ot.emd2 does; the wrapper must agree exactly
    rng = np.random.default_rng(3)
    for shape in [(3, 4), (15, 20)]:
        first, second = rng.random(shape), rng.random(shape)
        first, second = first / first.sum(), second / second.sum()
        direct = grid_emd(first, second)
        monkeypatch.setattr(earth_mover, "_compiled_solver", lambda: None)  # the ot.emd2 route
        assert grid_emd(first, second) == direct
        monkeypatch.undo()
