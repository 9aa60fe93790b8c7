"""EMD (EMD.m): earth mover's distance at 1/32 size, solved exactly on the pixel grid.

`emd` downsizes both maps as EMD.m does and hands them to `grid_emd`, the exact transport
between two mass maps on one pixel grid. Public through `keras_emlnet.metrics` (see its
docstring for conventions).

The MIT benchmark's EMD.m calls FastEMD's `emd_hat_gd_metric_mex(P, Q, D, 0)` with D the
Euclidean distance between pixel centres (no thresholding: its threshold is max(D), which
changes nothing) and a zero extra-mass penalty. For a metric ground distance FastEMD first
cancels the mass two maps share at each pixel, so only the signed difference moves:

    EMD(P, Q) = min_F sum_ij F_ij D_ij  s.t.  F >= 0,  sum_j F_ij = max(P - Q, 0)_i,
                                                   sum_i F_ij = max(Q - P, 0)_j

(negative entries, which bicubic resizing can produce, are handled the same way). We solve
that transportation problem exactly with a network simplex (POT's compiled solver) over the
pixels that send mass to the pixels that receive it. FastEMD rounds masses and distances to
integers in units of 1e-6 of their maxima before solving, so its scores differ from the exact
optimum by about 1e-6 relative.
"""

import functools
import importlib
import math
import os
import sys

import numpy as np
from numpy.typing import ArrayLike

from keras_emlnet.metrics import _checks as inputs
from keras_emlnet.metrics import imresize as imresize_lib

EMD_DOWNSIZE = 32  # EMD.m: imresize(fixationMap, 1/downsize)

# Network-simplex pivots allowed per transported arc before giving up.
_PIVOTS_PER_ARC = 50
_MIN_PIVOTS = 100_000
# Relative difference of the two total masses tolerated (rounding of two normalised maps).
MASS_TOLERANCE = 1e-9
# POT's documented switches that keep `import ot` from importing every array framework it finds.
_POT_BACKEND_SWITCHES = (
    "POT_BACKEND_DISABLE_PYTORCH",
    "POT_BACKEND_DISABLE_TENSORFLOW",
    "POT_BACKEND_DISABLE_JAX",
    "POT_BACKEND_DISABLE_CUPY",
)


@functools.lru_cache(maxsize=8)
def grid_distances(rows, cols):
    """Euclidean distances between the centres of a rows x cols grid, row-major, read-only."""
    r, c = np.divmod(np.arange(rows * cols), cols)
    distances = np.hypot(r[:, None] - r[None, :], c[:, None] - c[None, :]).astype(np.float64)
    distances.setflags(write=False)
    return distances


@functools.lru_cache(maxsize=1)
def _pot():
    """The `ot` (POT) module, imported on first use without its array-framework backends.

    A plain `import ot` imports TensorFlow and PyTorch when installed (seconds, hundreds of
    MiB) for a solver that needs only NumPy. If `ot` is already imported it is used as is;
    otherwise the switches are set only while it imports, so this process's POT then has the
    NumPy backend only.
    """
    if "ot" in sys.modules:
        return sys.modules["ot"]
    saved = {key: os.environ.get(key) for key in _POT_BACKEND_SWITCHES}
    os.environ.update({key: "1" for key in _POT_BACKEND_SWITCHES})
    try:
        return importlib.import_module("ot")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@functools.lru_cache(maxsize=1)
def _compiled_solver():
    """POT's compiled network simplex `ot.lp.emd_wrap.emd_c`, or None if this POT lacks it.

    `ot.emd2` wraps it in backend conversion, argument checks and dual-potential centring,
    about 0.3 ms per call here; we call it the way emd2 does for dense NumPy input with every
    mass nonzero (demand rescaled to the supply's total, no warm start, one thread).
    """
    _pot()
    try:
        from ot.lp.emd_wrap import emd_c
    except ImportError:
        return None
    return emd_c


_SOLVER_RESULTS = {0: "the problem is infeasible", 2: "the problem is unbounded", 3: "the pivot limit was reached"}


def _network_simplex_cost(supply, demand, cost):
    max_pivots = max(_MIN_PIVOTS, _PIVOTS_PER_ARC * cost.size)
    solver = _compiled_solver()
    if solver is None:
        value, log = _pot().emd2(supply, demand, cost, numItermax=max_pivots, log=True)
        result_code, message = log["result_code"], log["warning"]
    else:
        demand = demand * supply.sum(0) / demand.sum(0, keepdims=True)  # as ot.emd2 does
        _, value, _, _, result_code = solver(supply, demand, cost, max_pivots, 1)
        message = _SOLVER_RESULTS.get(result_code, f"result code {result_code}")
    if result_code != 1:
        raise RuntimeError(f"the transport solver did not reach the optimum: {message}")
    return float(value)


def grid_emd(first, second):
    """Earth mover's distance between two 2-D mass maps of equal shape and equal total mass.

    Args:
        first: 2-D float array (FastEMD's P), entries may be negative.
        second: 2-D float array of the same shape (Q) with the same total.

    Returns:
        The minimum cost of moving max(P - Q, 0) onto max(Q - P, 0) with cost the Euclidean
        distance (in pixels) between pixel centres, as a float.

    Raises:
        ValueError: shapes differ or the totals differ by more than MASS_TOLERANCE.
        RuntimeError: the solver hit its pivot limit.
    """
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(f"grid_emd needs two 2-D maps of one shape, got {first.shape} and {second.shape}")
    net = first.ravel() - second.ravel()
    sources = np.flatnonzero(net > 0)
    sinks = np.flatnonzero(net < 0)
    supply = net[sources]
    demand = -net[sinks]
    total_supply, total_demand = supply.sum(), demand.sum()
    scale = max(abs(first.sum()), abs(second.sum()), np.finfo(np.float64).tiny)
    if abs(total_supply - total_demand) > MASS_TOLERANCE * scale:
        raise ValueError(
            f"grid_emd needs equal total masses, got {first.sum()!r} and {second.sum()!r}"
        )
    if sources.size == 0 or sinks.size == 0:
        return 0.0
    demand = demand * (total_supply / total_demand)  # remove the rounding difference
    cost = np.ascontiguousarray(grid_distances(*first.shape)[np.ix_(sources, sinks)])
    return _network_simplex_cost(supply, demand, cost)


def emd(saliency_map: ArrayLike, density_map: ArrayLike) -> float:
    """Earth mover's distance (EMD.m) between the density and the prediction at 1/32 size.

    Formula:
        P = imresize(D, 1/32), Q = imresize(S, size(P)); P /= sum P, Q /= sum Q (signed)
        EMD = min transport cost from P to Q, ground distance Euclidean in (downsized) pixels

    Solved exactly (`grid_emd`); MATLAB's FastEMD quantises masses and distances to 1e-6 of
    their maxima, so it differs by ~1e-6 relative.

    Returns:
        EMD; NaN when either downsized map sums to zero.
    """
    small_density, density_total = _downsized(density_map, "density_map", scale=1.0 / EMD_DOWNSIZE)
    small_saliency, saliency_total = _downsized(saliency_map, "saliency_map", output_shape=small_density.shape)
    if density_total == 0 or saliency_total == 0:
        return float("nan")
    return grid_emd(small_density / density_total, small_saliency / saliency_total)


def _downsized(value, name, **size):
    """(imresize(map, **size), its sum), the map's values checked through the small map's sum."""
    array = inputs.float_map(value, name)
    small = imresize_lib.imresize(array, **size)
    with np.errstate(over="ignore", invalid="ignore"):  # a bad map is reported below
        total = small.sum()
    if not (math.isfinite(total) and imresize_lib.uses_every_pixel(array.shape, **size)):
        inputs.require_finite(array, name, array.sum())
    return small, total
