"""Tests for bnn_shift.priors.SumFilter."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from bnn_shift.priors import Gaussian, Temperature, by_path
from bnn_shift.priors.sumfilter import SumFilter

kernel_shapes = st.tuples(*[st.integers(1, 2)] * 2, *[st.integers(1, 3)] * 2)
scales = st.floats(1e-2, 10.0, allow_nan=False, allow_infinity=False)


def log_density64(w: np.ndarray, prior: SumFilter) -> float:
    """Float64 reference for one (out, in, kh, kw) kernel, normaliser from the closed form."""
    w = np.asarray(w, np.float64)
    out, cin, kh, kw = w.shape
    gauss = scipy.stats.norm.logpdf(w, scale=prior.std).sum()
    penalty = prior.penalty * np.abs(w.sum(axis=(2, 3))).sum()
    return gauss - penalty - out * cin * prior.log_slice_normaliser(kh * kw)


@settings(max_examples=10, deadline=None)
@given(shape=kernel_shapes, scale=scales, filter_scale=scales, seed=st.integers(0, 2**16))
def test_log_prob_matches_reference(shape, scale, filter_scale, seed):
    rng = np.random.default_rng(seed)
    prior = SumFilter(scale, filter_scale)
    w = rng.normal(0, scale, shape).astype(np.float32)
    got = float(prior.log_prob({"w": w}))
    # float32: <= 81 weights and 9 slice sums, each term O(10-100) with relative rounding ~1e-7
    assert got == pytest.approx(log_density64(w, prior), rel=1e-5, abs=1e-3)


def test_normaliser_by_numerical_integration_1x1x1x2():
    # Density of a (1, 1, 1, 2) kernel: N(w1) N(w2) exp(-a |w1 + w2|) / Z; must integrate to 1.
    prior = SumFilter(0.5, 0.4)
    x = np.array([[[[0.3, -0.9]]]], np.float32)
    assert float(prior.log_prob(jnp.asarray(x))) == pytest.approx(log_density64(x, prior), rel=1e-6)
    sigma, a, log_z = prior.std, prior.penalty, prior.log_slice_normaliser(2)
    log_norm = -math.log(2 * math.pi * sigma**2) - log_z
    density = lambda w2, w1: math.exp(
        log_norm - (w1 * w1 + w2 * w2) / (2 * sigma**2) - a * abs(w1 + w2)
    )
    # split along the kink w1 + w2 = 0 so each part is smooth; +-8 is 16 prior sds
    below, _ = scipy.integrate.dblquad(density, -8, 8, -8, lambda w1: -w1, epsabs=1e-10)
    above, _ = scipy.integrate.dblquad(density, -8, 8, lambda w1: -w1, 8, epsabs=1e-10)
    total = below + above
    assert total == pytest.approx(1.0, abs=1e-6)


def test_normaliser_by_monte_carlo_3x3():
    # Z = E exp(-a |sum w|) over w ~ N(0, sigma^2 I_9); n iid draws give SE std/sqrt(n). 5 SE.
    prior, n = SumFilter(0.1), 400_000
    w = np.random.default_rng(0).normal(0, prior.std, (n, 9))
    terms = np.exp(-prior.penalty * np.abs(w.sum(axis=1)))
    se = terms.std() / math.sqrt(n)
    assert abs(terms.mean() - math.exp(prior.log_slice_normaliser(9))) < 5 * se


@settings(max_examples=10, deadline=None)
@given(shape=kernel_shapes, scale=scales, seed=st.integers(0, 2**16))
def test_log_prob_diff_equals_difference_of_log_probs(shape, scale, seed):
    rng = np.random.default_rng(seed)
    prior = SumFilter(scale)
    old = rng.normal(0, scale, shape).astype(np.float32)
    new = (old + rng.normal(0, 0.1 * scale, shape)).astype(np.float32)
    diff = float(prior.log_prob_diff([new], [old]))
    naive = float(prior.log_prob(new) - prior.log_prob(old))
    truth = log_density64(new, prior) - log_density64(old, prior)
    assert diff == pytest.approx(truth, rel=1e-5, abs=1e-4)
    assert diff == pytest.approx(naive, rel=1e-4, abs=1e-3)


def test_log_prob_diff_is_precise_where_totals_cancel():
    # 256*256*3*3 ~ 6e5 weights: log p ~ 1e6 (float32 spacing 0.06); moving 10 weights by 1e-3
    # changes it by ~1e-2, which only the termwise form resolves.
    prior = SumFilter(1.0)
    rng = np.random.default_rng(0)
    old = jnp.asarray(rng.normal(size=(256, 256, 3, 3)), jnp.float32)
    new = old.at[0, :10, 0, 0].add(1e-3)
    truth = log_density64(np.asarray(new), prior) - log_density64(np.asarray(old), prior)
    assert abs(truth) > 1e-4
    ours = float(prior.log_prob_diff(new, old))
    naive = float(prior.log_prob(new) - prior.log_prob(old))
    # 10 changed weights and 10 changed slice sums, each float32 term exact to ~1e-7 relative
    assert ours == pytest.approx(truth, rel=1e-4)
    assert abs(naive - truth) > 100 * abs(ours - truth)


def test_sample_sum_law_and_orthogonal_part():
    # One prior, two kernels (one compilation): 3x3 slices have a*tau = 4.5 (direct inverse
    # CDF); 13x13 slices have a*tau = 19.5, the tail where inverting P(X > x) itself underflows.
    scale = 0.2
    prior = SumFilter(scale)
    like = [jnp.zeros((100, 50, 3, 3)), jnp.zeros((100, 50, 13, 13))]
    for kernel in jax.jit(prior.sample)(jax.random.key(0), like):
        check_slices(prior, np.asarray(kernel, np.float64))


def check_slices(prior: SumFilter, kernel: np.ndarray) -> None:
    """Slice sums follow N(s; 0, tau^2) exp(-a|s|); the rest is N(0, sigma^2) on 1-perp."""
    k, scale = kernel.shape[2] * kernel.shape[3], prior.std
    w = kernel.reshape(-1, k)  # 5000 iid slices
    n, sums, tau, a = len(w), w.sum(axis=1), scale * math.sqrt(k), prior.penalty
    # CDF of the slice-sum density by numerical integration on a grid 40 spreads wide; the grid
    # total doubles as a check of the closed-form normaliser.
    spread = min(tau, 1 / a)
    grid = np.linspace(-40 * spread, 40 * spread, 200_001)
    dens = scipy.stats.norm.pdf(grid, scale=tau) * np.exp(-a * np.abs(grid))
    cdf = scipy.integrate.cumulative_trapezoid(dens, grid, initial=0.0)
    assert cdf[-1] == pytest.approx(math.exp(prior.log_slice_normaliser(k)), rel=1e-6)
    pvalue = scipy.stats.kstest(sums, lambda s: np.interp(s, grid, cdf / cdf[-1])).pvalue
    assert pvalue > 1e-3  # fixed seed, so this is deterministic
    # Orthogonal complement: coordinates in an orthonormal basis Q (k, k-1) of 1-perp are iid
    # N(0, sigma^2): per direction the sample variance has SE sigma^2 sqrt(2/n); 5 SE.
    q = np.linalg.qr(np.eye(k) - 1.0 / k)[0][:, : k - 1]
    coords = w @ q
    assert np.all(np.abs(coords.var(axis=0) - scale**2) < 5 * scale**2 * math.sqrt(2 / n))
    # uncorrelated with the sum: correlation SE 1/sqrt(n); 5 SE
    corr = (coords - coords.mean(0)).T @ (sums - sums.mean()) / n / coords.std(0) / sums.std()
    assert np.all(np.abs(corr) < 5 / math.sqrt(n))


def test_weak_filter_penalty_is_the_gaussian():
    w = jnp.asarray(np.random.default_rng(1).normal(0, 0.3, (4, 3, 3, 3)), jnp.float32)
    weak = SumFilter(0.3, filter_scale=1e4)  # a = 5e-9: penalty and log Z vanish
    assert float(weak.log_prob(w)) == pytest.approx(float(Gaussian(0.3).log_prob(w)), rel=1e-6)


def test_non_conv_leaves_raise():
    with pytest.raises(ValueError, match=r"conv kernels \(out, in, kh, kw\); got shape \(3, 4\)"):
        SumFilter(0.1).log_prob({"w": jnp.zeros((3, 4))})
    with pytest.raises(ValueError, match="conv kernels"):
        SumFilter(0.1).sample(jax.random.key(0), jnp.zeros(5))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0.0,), "scale"),
        ((float("nan"),), "scale"),
        ((0.1, 0.0), "filter_scale"),
        ((0.1, float("inf")), "filter_scale"),
    ],
)
def test_bad_arguments_raise(args, match):
    with pytest.raises(ValueError, match=match):
        SumFilter(*args)


def test_defaults_scale_and_describe():
    prior = SumFilter(0.1)
    assert prior.scale == 0.1
    assert prior.penalty == pytest.approx(7.5)  # a = wd_f/2 with the reference default wd_f = 15
    assert "wd_f 15" in prior.describe()


def test_by_path_and_temperature():
    params = {"conv": {"weight": jnp.full((2, 3, 3, 3), 0.05), "bias": jnp.ones(2)}}
    sf, gauss = SumFilter(0.2), Gaussian(0.2)
    composed = by_path({"conv.weight": sf, "*": gauss})
    expected = sf.log_prob(params["conv"]["weight"]) + gauss.log_prob(params["conv"]["bias"])
    assert float(composed.log_prob(params)) == pytest.approx(float(expected), rel=1e-6)
    cold, w = Temperature(sf, 0.5), params["conv"]["weight"]
    assert float(cold.log_prob(w)) == pytest.approx(2 * float(sf.log_prob(w)), rel=1e-6)
    assert float(cold.log_prob_diff(-w, w)) == pytest.approx(
        2 * float(sf.log_prob_diff(-w, w)), abs=1e-5
    )
