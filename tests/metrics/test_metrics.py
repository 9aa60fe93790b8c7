"""keras_emlnet.metrics against hand-computed cases, line-by-line MATLAB ports and invariants."""

import numpy as np
import pytest
import scipy.ndimage
import scipy.optimize

from keras_emlnet import metrics
from keras_emlnet.metrics.density import _kld_direct
from keras_emlnet.metrics.earth_mover import grid_distances
from keras_emlnet.metrics.imresize import imresize
from tests.metrics import matlab_reference as ref

SHAPE = (24, 32)


@pytest.fixture(scope="module")
def maps():
    return ref.example_maps(SHAPE)


# ---------------------------------------------------------------- hand-computed cases


def test_nss_hand_case():
    # mean 2.5, std (N-1) sqrt(5/3); fixation on 4 -> 1.5 / sqrt(5/3)
    assert metrics.nss([[1.0, 2.0], [3.0, 4.0]], [[0, 0], [0, 1]]) == pytest.approx(1.5 / np.sqrt(5 / 3))


def test_cc_hand_case():
    # deviations (-1.5, -.5, .5, 1.5) and (-1.5, .5, -.5, 1.5): 4 / sqrt(5 * 5)
    assert metrics.cc([[1.0, 2.0], [3.0, 4.0]], [[1.0, 3.0], [2.0, 4.0]]) == pytest.approx(0.8)


def test_kld_hand_case():
    # P uniform 1/4, Q all on one pixel: 1 * log(eps + 1 / (1/4 + eps)) = log 4 (to 1e-15)
    assert metrics.kld(np.ones((2, 2)), [[1.0, 0.0], [0.0, 0.0]]) == pytest.approx(np.log(4.0), rel=1e-14)


def test_sim_hand_case():
    # minmax/sum: (0, .25, .25, .5) and (.5, .5, 0, 0) -> sum of minima .25
    assert metrics.sim([[0.0, 1.0], [1.0, 2.0]], [[1.0, 1.0], [0.0, 0.0]]) == pytest.approx(0.25)


def test_info_gain_hand_case():
    # P = (0, 1/6, 1/3, 1/2), B = (0, 0, 0, 1); fixations on P=1/2,B=1 and P=1/6,B=0
    eps = 2.0**-52
    expected = np.mean([np.log2(eps + 1 / 2) - np.log2(eps + 1), np.log2(eps + 1 / 6) - np.log2(eps)])
    got = metrics.info_gain([[0.0, 1.0], [2.0, 3.0]], [[0, 1], [0, 1]], [[1.0, 1.0], [1.0, 2.0]])
    assert got == pytest.approx(expected, rel=1e-14)


def test_emd_hand_case():
    # a 64 x 64 map downsizes to 2 x 2; a point mass in one quadrant vs the opposite quadrant.
    # Bicubic downsizing spreads some mass, so compare with the exact transport of the resized maps.
    density = np.zeros((64, 64))
    density[:32, :32] = 1
    saliency = density[::-1, ::-1].copy()
    p = imresize(density, scale=1 / 32)
    q = imresize(saliency, output_shape=p.shape)
    p, q = p / p.sum(), q / q.sum()
    # symmetric 2 x 2 problem: net mass d on the diagonal corners moves sqrt(2), the two
    # off-diagonal corners are equal in both maps; verified against the LP below too
    net = p - q
    assert metrics.emd(saliency, density) == pytest.approx(net[net > 0].sum() * np.sqrt(2), rel=1e-12)


# ---------------------------------------------------------------- MATLAB ports


@pytest.mark.parametrize("name", ["nss", "cc", "kld", "sim"])
def test_pair_metrics_match_port(maps, name):
    truth = maps["fix"] if name == "nss" else maps["den"]
    got = getattr(metrics, name)(maps["sal"], truth)
    assert got == pytest.approx(getattr(ref, name)(maps["sal"], truth), rel=1e-12, abs=1e-14)


def test_info_gain_matches_port(maps):
    got = metrics.info_gain(maps["sal"], maps["fix"], maps["base"])
    assert got == pytest.approx(ref.info_gain(maps["sal"], maps["fix"], maps["base"]), rel=1e-12)


def test_large_offsets_follow_the_port(maps):
    # sum(x - min) must not be taken as sum(x) - n*min when that cancels most digits
    shifted = maps["sal"] + 1e9
    assert metrics.sim(shifted, maps["den"]) == pytest.approx(ref.sim(shifted, maps["den"]), rel=1e-9)
    got = metrics.info_gain(shifted, maps["fix"], maps["base"] + 1e9)
    assert got == pytest.approx(ref.info_gain(shifted, maps["fix"], maps["base"] + 1e9), rel=1e-9)


def test_metrics_resize_the_saliency_map_first(maps):
    small = maps["sal"][::2, ::3].copy()  # 12 x 11 -> resized to 24 x 32
    big = imresize(small, output_shape=SHAPE)
    for name, truth in [("nss", "fix"), ("cc", "den"), ("kld", "den"), ("sim", "den")]:
        fn = getattr(metrics, name)
        assert fn(small, maps[truth]) == pytest.approx(fn(big, maps[truth]), rel=1e-12)
    assert metrics.auc_judd(small, maps["fix"], jitter=False) == metrics.auc_judd(big, maps["fix"], jitter=False)
    assert metrics.auc_borji(small, maps["fix"], n_splits=None) == pytest.approx(
        metrics.auc_borji(big, maps["fix"], n_splits=None), abs=1e-14
    )
    assert metrics.info_gain(small, maps["fix"], maps["base"][:5, :7]) == pytest.approx(
        ref.info_gain(big, maps["fix"], imresize(maps["base"][:5, :7], output_shape=SHAPE)), rel=1e-12
    )


def test_emd_matches_linear_program_on_resized_maps():
    rng = np.random.default_rng(1)
    saliency = scipy.ndimage.gaussian_filter(rng.random((160, 224)), 8)
    density = scipy.ndimage.gaussian_filter((rng.random((160, 224)) > 0.995).astype(float), 12)
    p = imresize(density, scale=1 / 32)  # 5 x 7
    q = imresize(saliency, output_shape=p.shape)
    p, q = p / p.sum(), q / q.sum()
    assert p.shape == (5, 7) and p.min() >= 0 and q.min() >= 0  # the LP needs non-negative masses
    n = p.size
    equalities = np.zeros((2 * n, n * n))
    for i in range(n):
        equalities[i, i * n : (i + 1) * n] = 1
        equalities[n + i, i::n] = 1
    lp = scipy.optimize.linprog(
        grid_distances(*p.shape).ravel(), A_eq=equalities, b_eq=np.concatenate([p.ravel(), q.ravel()])
    )
    assert metrics.emd(saliency, density) == pytest.approx(lp.fun, rel=1e-9)


# ---------------------------------------------------------------- invariants


def test_identities(maps):
    den = maps["den"]
    assert metrics.cc(den, den) == pytest.approx(1.0, abs=1e-12)
    assert metrics.kld(den, den) == pytest.approx(0.0, abs=1e-12)
    assert metrics.sim(den, den) == pytest.approx(1.0, abs=1e-12)
    assert metrics.emd(np.kron(den, np.ones((4, 4))), np.kron(den, np.ones((4, 4)))) == pytest.approx(0.0, abs=1e-12)
    assert metrics.info_gain(maps["sal"], maps["fix"], maps["sal"]) == pytest.approx(0.0, abs=1e-12)
    assert metrics.cc(-den, den) == pytest.approx(-1.0, abs=1e-12)


def test_scale_and_shift_invariance_where_matlab_has_it(maps):
    sal, fix, den = maps["sal"], maps["fix"], maps["den"]
    affine = 7.0 * sal + 3.0
    for name, truth in [("nss", fix), ("cc", den), ("sim", den)]:
        fn = getattr(metrics, name)
        assert fn(affine, truth) == pytest.approx(fn(sal, truth), rel=1e-10)
    assert metrics.info_gain(affine, fix, maps["base"]) == pytest.approx(metrics.info_gain(sal, fix, maps["base"]), rel=1e-10)
    assert metrics.auc_judd(affine, fix, jitter=False) == pytest.approx(metrics.auc_judd(sal, fix, jitter=False), abs=1e-12)
    assert metrics.auc_borji(affine, fix, n_splits=None) == pytest.approx(metrics.auc_borji(sal, fix, n_splits=None), abs=1e-12)
    # KLD and EMD normalise by the sum only: scale-invariant, not shift-invariant
    assert metrics.kld(7.0 * sal, den) == pytest.approx(metrics.kld(sal, den), rel=1e-12)
    assert metrics.kld(sal + 3.0, den) != pytest.approx(metrics.kld(sal, den), rel=1e-6)
    big_sal, big_den = np.kron(sal, np.ones((4, 4))), np.kron(den, np.ones((4, 4)))
    assert metrics.emd(7.0 * big_sal, big_den) == pytest.approx(metrics.emd(big_sal, big_den), rel=1e-9)


def test_integer_and_bool_inputs_are_used_as_values(maps):
    fix_bool = maps["fix"].astype(bool)
    sal_u8 = np.round(maps["sal"] / maps["sal"].max() * 255).astype(np.uint8)
    assert metrics.nss(sal_u8, fix_bool) == pytest.approx(metrics.nss(sal_u8.astype(float), maps["fix"]))
    assert metrics.auc_judd(sal_u8, fix_bool, jitter=False) == metrics.auc_judd(sal_u8.astype(float), maps["fix"], jitter=False)


# ---------------------------------------------------------------- degenerate input


def test_nan_where_matlab_gives_nan(maps):
    sal, fix, den, oth = maps["sal"], maps["fix"], maps["den"], maps["oth"]
    constant, none = np.full(SHAPE, 0.5), np.zeros(SHAPE)
    one_fix = np.zeros(SHAPE)
    one_fix[3, 4] = 1
    nan_cases = [
        metrics.auc_judd(sal, none), metrics.auc_judd(constant, fix, jitter=False),
        metrics.auc_judd(sal, np.ones(SHAPE), jitter=False),
        metrics.auc_borji(sal, none), metrics.auc_borji(sal, one_fix), metrics.auc_borji(constant, fix),
        metrics.auc_shuffled(sal, none, oth), metrics.auc_shuffled(constant, fix, oth),
        metrics.auc_shuffled(sal, fix, none),
        metrics.nss(constant, fix), metrics.nss(sal, none),
        metrics.cc(constant, den), metrics.cc(sal, constant),
        metrics.sim(constant, den), metrics.emd(none, den), metrics.emd(sal, none),
        metrics.info_gain(constant, fix, maps["base"]), metrics.info_gain(sal, fix, constant),
        metrics.info_gain(sal, none, maps["base"]),
    ]
    assert all(np.isnan(value) for value in nan_cases), nan_cases
    # jitter breaks a constant map's ties, as in MATLAB: a number, near chance
    assert 0.3 < metrics.auc_judd(constant, fix) < 0.7


def test_zero_maps_give_matlab_numbers(maps):
    den = maps["den"]
    q = den / den.sum()
    eps = 2.0**-52
    # KLdiv.m leaves an all-zero prediction at zero: sum q log(eps + q / eps)
    assert metrics.kld(np.zeros(SHAPE), den) == pytest.approx(np.sum(q * np.log(eps + q / eps)), rel=1e-12)
    assert metrics.kld(maps["sal"], np.zeros(SHAPE)) == 0.0
    assert metrics.sim(np.zeros(SHAPE), den) == 0.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: metrics.nss(np.zeros((2, 3, 4)), m["fix"]), "saliency_map must be a 2-D"),
        (lambda m: metrics.cc(m["sal"], np.zeros(5)), "density_map must be a 2-D"),
        (lambda m: metrics.kld(np.zeros((0, 3)), m["den"]), "saliency_map is empty"),
        (lambda m: metrics.sim(np.where(m["sal"] > 0.5, np.nan, m["sal"]), m["den"]), "NaN or infinite"),
        (lambda m: metrics.emd(m["sal"], np.full(SHAPE, np.inf)), "density_map contains NaN or infinite"),
        (lambda m: metrics.auc_judd(m["sal"], -m["fix"]), "non-negative"),
        (lambda m: metrics.auc_shuffled(m["sal"], m["fix"], m["oth"][:5]), "other_map shape"),
        (lambda m: metrics.auc_borji(m["sal"], m["fix"], n_splits=0), "n_splits"),
        (lambda m: metrics.auc_borji(m["sal"], m["fix"], n_splits=2.5), "n_splits"),
        (lambda m: metrics.auc_shuffled(m["sal"], m["fix"], m["oth"], step_size=0.0), "step_size"),
        (lambda m: metrics.info_gain(m["sal"], m["fix"], "baseline"), "baseline_map must be numeric"),
        (lambda m: metrics.cc(m["sal"] + 1j, m["den"]), "must be real"),
        (lambda m: metrics.kld(m["sal"] - 0.5, m["den"]), "complex"),
    ],
)
def test_bad_input_raises_a_clear_error(maps, call, message):
    with pytest.raises(ValueError, match=message):
        call(maps)


# ---------------------------------------------------------------- fast paths against the direct formulas


def test_kld_and_sim_rescaled_forms_equal_the_direct_formulas(maps):
    sal, den = maps["sal"], maps["den"]
    p_total, q_total = sal.sum(), den.sum()
    direct = _kld_direct(sal, den, p_total, q_total)
    assert metrics.kld(sal, den) == pytest.approx(direct, rel=1e-13)
    assert metrics.kld(sal, den) == pytest.approx(ref.kld(sal, den), rel=1e-13)
    # tiny maps: eps * sum(S) is subnormal, so the direct formula is used, still equal to the port
    tiny = sal * 1e-300
    assert metrics.kld(tiny, den) == pytest.approx(ref.kld(tiny, den), rel=1e-12)
    huge = sal * 1e300
    assert metrics.sim(huge, den * 1e-300) == pytest.approx(ref.sim(sal, den), rel=1e-12)
    assert metrics.sim(sal + 5.0, den + 1.0) == pytest.approx(ref.sim(sal + 5.0, den + 1.0), rel=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_emd_sees_a_bad_value_anywhere_through_the_downsized_map(bad):
    # EMD checks the maps through the sums of their 1/32 versions: every pixel must reach them
    density = np.random.default_rng(0).random((64, 96))
    for row, col in [(0, 0), (63, 95), (31, 47), (17, 80)]:
        broken = density.copy()
        broken[row, col] = bad
        with pytest.raises(ValueError, match="density_map contains NaN"):
            metrics.emd(density, broken)
        with pytest.raises(ValueError, match="saliency_map contains NaN"):
            metrics.emd(broken, density)
