"""Chunked whole-map sums (keras_emlnet.metrics._reductions) against one-line NumPy formulas."""

import numpy as np
import pytest

from keras_emlnet.metrics import _reductions as br

# one partial chunk, several chunks with a partial last one, a single short map
SIZES = [37, 3 * br.BLOCK_SIZE + 1234, br.DOT_CHUNK + 1]


@pytest.fixture(params=SIZES)
def pair(request):
    rng = np.random.default_rng(request.param)
    return rng.random(request.param) * 3 - 1, rng.random(request.param)


def test_dot_equals_the_sum_of_products(pair):
    a, b = pair
    assert br.dot(a, b) == pytest.approx(np.sum(a * b), rel=1e-13)


def test_blocks_cover_the_maps_in_order(pair):
    a, b = pair
    chunks = list(br.blocks(a.reshape(1, -1), b))
    np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), a)
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), b)
    assert all(c[0].size <= br.BLOCK_SIZE for c in chunks)


def test_centered_products(pair):
    a, b = pair
    da, db = a - 0.3, b - 0.6
    (squares,) = br.centered_products(a, 0.3)
    assert squares == pytest.approx(np.sum(da * da), rel=1e-13)
    got = br.centered_products(a, 0.3, b, 0.6)
    np.testing.assert_allclose(got, [np.sum(da * da), np.sum(da * db), np.sum(db * db)], rtol=1e-13)


def test_kl_sum_is_the_rescaled_kl_divergence(pair):
    s, d = pair
    s = np.abs(s)
    eps = 2.0**-52
    p_total, q_total = s.sum(), d.sum()
    p, q = s / p_total, d / q_total
    kld = np.sum(q * np.log(eps + q / (p + eps)))  # KLdiv.m
    got = br.kl_sum(s, d, p_total / q_total, eps * p_total, eps) / q_total
    assert got == pytest.approx(kld, rel=1e-13, abs=1e-15)


def test_kl_sum_is_nan_for_a_negative_ratio():
    s, d = np.array([1.0, -2.0, 3.0]), np.array([0.2, 0.3, 0.5])
    assert np.isnan(br.kl_sum(s, d, 2.0, 2.0 * 2.0**-52, 2.0**-52))


@pytest.mark.parametrize("offsets", [(0.0, 0.0), (-1.0, 0.25)])
def test_intersection_sum_is_sim_rescaled(pair, offsets):
    s, d = pair
    a_total, b_total = np.sum(s - offsets[0]), np.sum(d - offsets[1])
    p, q = (s - offsets[0]) / a_total, (d - offsets[1]) / b_total
    got = br.intersection_sum(s, offsets[0], d, offsets[1], a_total / b_total) / a_total
    assert got == pytest.approx(np.sum(np.minimum(p, q)), rel=1e-13)


def test_pair_pass_gives_each_term_exactly_its_own_pass(pair):
    # KLD, CC and SIM share one pass in suite.score_all: the same chunks and operations, the same sums
    s, d = pair
    s = np.abs(s) + 0.1
    terms = [br.KLSum(1.7, 0.3 * 2.0**-52, 2.0**-52), br.CenteredProducts(0.2, 0.5), br.IntersectionSum(0.1, 0.0, 2.5)]
    together = br.pair_pass(s, d, terms)
    assert together[0] == br.kl_sum(s, d, 1.7, 0.3 * 2.0**-52, 2.0**-52)
    assert together[1] == br.centered_products(s, 0.2, d, 0.5)
    assert together[2] == br.intersection_sum(s, 0.1, d, 0.0, 2.5)
    assert together[2] == pytest.approx(np.minimum(s - 0.1, d * 2.5).sum(), rel=1e-13)
