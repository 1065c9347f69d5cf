"""Tests for bnn_shift.priors.ExpNorm."""

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
from hypothesis.extra import numpy as hnp

from bnn_shift.priors import Gaussian, Temperature, by_path
from bnn_shift.priors.expnorm import ExpNorm

# few distinct shapes, so eager per-shape compilations are reused across examples
shapes = hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3)
scales = st.floats(1e-2, 1e2, allow_nan=False, allow_infinity=False)
powers = st.floats(0.5, 4.0, allow_nan=False, allow_infinity=False)


def log_density64(x: np.ndarray, p: float, scale: float) -> float:
    """Float64 reference: -||x||^p / (2 scale^2) - log Z(d), Z from the ExpNorm formula."""
    x = np.asarray(x, np.float64).ravel()
    return -0.5 / scale**2 * np.sum(x**2) ** (p / 2) - ExpNorm(p, scale).log_normaliser(x.size)


@settings(max_examples=10, deadline=None)
@given(shape_a=shapes, shape_b=shapes, scale=scales, seed=st.integers(0, 2**16))
def test_p2_is_the_gaussian(shape_a, shape_b, scale, seed):
    rng = np.random.default_rng(seed)
    params = {
        "a": rng.normal(0, scale, shape_a).astype(np.float32),
        "b": [rng.normal(0, scale, shape_b).astype(np.float32)],
    }
    new = jax.tree.map(lambda x: np.float32(1.1) * x, params)
    exp_norm, gauss = ExpNorm(2.0, scale), Gaussian(scale)
    # float32: totals of <= 128 O(10) terms, relative rounding ~1e-7 each
    assert float(exp_norm.log_prob(params)) == pytest.approx(
        float(gauss.log_prob(params)), rel=1e-5, abs=1e-4
    )
    assert float(exp_norm.log_prob_diff(new, params)) == pytest.approx(
        float(gauss.log_prob_diff(new, params)), rel=1e-5, abs=1e-5
    )
    assert exp_norm.scale == scale


@pytest.mark.parametrize("p", [1.0, 1.5, 3.0])
def test_normaliser_by_numerical_integration(p):
    scale = 0.7
    c, prior = 0.5 / scale**2, ExpNorm(p, scale)
    log_z1, log_z2 = prior.log_normaliser(1), prior.log_normaliser(2)
    density1 = lambda x: math.exp(-c * abs(x) ** p - log_z1)
    density2 = lambda y, x: math.exp(-c * math.hypot(x, y) ** p - log_z2)
    one_d, _ = scipy.integrate.quad(density1, -np.inf, np.inf)
    two_d, _ = scipy.integrate.dblquad(density2, -np.inf, np.inf, -np.inf, np.inf, epsabs=1e-10)
    # quad's own error estimates are ~1e-9 here
    assert one_d == pytest.approx(1.0, abs=1e-6)
    assert two_d == pytest.approx(1.0, abs=1e-6)
    x = np.array([0.3, -1.2], np.float32)
    assert float(ExpNorm(p, scale).log_prob(jnp.asarray(x))) == pytest.approx(
        log_density64(x, p, scale), rel=1e-6, abs=1e-5
    )


@settings(max_examples=10, deadline=None)
@given(shape=shapes, p=powers, scale=scales, seed=st.integers(0, 2**16))
def test_log_prob_diff_equals_difference_of_log_probs(shape, p, scale, seed):
    rng = np.random.default_rng(seed)
    old = {"w": rng.normal(0, scale, shape).astype(np.float32), "b": np.float32(0.3 * scale)}
    new = jax.tree.map(
        lambda x: np.asarray(x + rng.normal(0, 0.1 * scale, np.shape(x)), np.float32), old
    )
    prior = ExpNorm(p, scale)
    diff = float(prior.log_prob_diff(new, old))
    naive = float(prior.log_prob(new) - prior.log_prob(old))
    truth = log_density64(np.concatenate([np.ravel(x) for x in jax.tree.leaves(new)]), p, scale)
    truth -= log_density64(np.concatenate([np.ravel(x) for x in jax.tree.leaves(old)]), p, scale)
    assert diff == pytest.approx(truth, rel=1e-5, abs=1e-5)
    assert diff == pytest.approx(naive, rel=1e-4, abs=1e-3)


def test_log_prob_diff_from_and_to_zero():
    prior = ExpNorm(1.5, 1.0)
    zero, x = jnp.zeros(3), jnp.array([3.0, 0.0, 4.0])  # ||x|| = 5
    assert float(prior.log_prob_diff(x, zero)) == pytest.approx(-0.5 * 5**1.5, rel=1e-6)
    assert float(prior.log_prob_diff(zero, x)) == pytest.approx(0.5 * 5**1.5, rel=1e-6)


def test_log_prob_diff_is_precise_where_totals_cancel():
    # 10^6 parameters: log p is ~1e6 in size (float32 spacing 0.06); moving 10 of them by 1e-3
    # changes it by ~1e-4. The difference is formed from sum (a-b)(a+b) via log1p/expm1.
    rng = np.random.default_rng(0)
    prior = ExpNorm(1.5, 1.0)
    old = {"w": jnp.asarray(rng.normal(size=(1000, 1000)), jnp.float32)}
    new = {"w": old["w"].at[0, :10].add(1e-3)}
    o64, n64 = (np.asarray(t["w"], np.float64).ravel() for t in (old, new))
    truth = log_density64(n64, 1.5, 1.0) - log_density64(o64, 1.5, 1.0)
    assert abs(truth) > 1e-5
    ours = float(prior.log_prob_diff(new, old))
    naive = float(prior.log_prob(new) - prior.log_prob(old))
    # limited by the float32 sum of squares (relative ~1e-6) that scales the small ratio
    assert ours == pytest.approx(truth, rel=1e-3)
    assert abs(naive - truth) > 100 * abs(ours - truth)


@pytest.mark.parametrize("p", [1.0, 3.0])
def test_sample_radius_law_direction_and_scale(p):
    scale, n = 0.5, 2000
    like = {"a": jnp.zeros(3), "b": [jnp.zeros((2, 2))]}  # d = 7, one joint norm
    d = 7
    prior = ExpNorm(p, scale, dim=d)
    keys = jax.random.split(jax.random.key(0), n)
    draws = jax.jit(jax.vmap(lambda k: prior.sample(k, like)))(keys)
    x = np.concatenate(
        [np.asarray(leaf, np.float64).reshape(n, -1) for leaf in jax.tree.leaves(draws)], axis=1
    )
    r = np.linalg.norm(x, axis=1)
    # r^p ~ Gamma(d/p, rate = wd/2); fixed seed, so the p-value is fixed
    gamma = scipy.stats.gamma(d / p, scale=1 / prior.rate)
    assert scipy.stats.kstest(r**p, gamma.cdf).pvalue > 1e-3
    # uniform direction: E u = 0 with SE sqrt(1/(d n)) per coordinate; 5 SE
    u = x / r[:, None]
    assert np.all(np.abs(u.mean(axis=0)) < 5 / math.sqrt(d * n))
    # per-coordinate rms: mean of ||x||^2/d over n iid draws, SE from their sample std; 5 SE
    sq = r**2 / d
    std = prior.trajectory_scale
    assert abs(math.sqrt(sq.mean()) - std) < 5 * sq.std() / math.sqrt(n) / (2 * std)


def test_trajectory_scale_needs_dim_when_p_is_not_2():
    assert ExpNorm(2.0, 0.3).trajectory_scale == 0.3
    assert ExpNorm(2.0, 0.3).coordinate_std(1000) == pytest.approx(0.3, rel=1e-9)
    with pytest.raises(ValueError, match="dim"):
        _ = ExpNorm(1.0, 0.1).trajectory_scale
    # p = 1 on the MLP's 269,322 parameters with wd = 100: coordinate std ~ sqrt(d)/c ~ 10
    assert ExpNorm(1.0, 0.1, dim=269_322).trajectory_scale > 10
    assert ExpNorm(1.0, 0.1).scale == 0.1  # the setting, whatever p


def test_gradient_is_finite_at_zero():
    for p in (0.5, 1.0, 1.5, 3.0):
        grad = jax.grad(ExpNorm(p, 1.0).log_prob)(jnp.zeros(4))
        assert np.all(np.isfinite(np.asarray(grad)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"p": 0.0, "scale": 1.0}, "power p"),
        ({"p": float("nan"), "scale": 1.0}, "power p"),
        ({"p": 2.0, "scale": -1.0}, "scale"),
        ({"p": 2.0, "scale": 1.0, "dim": 0}, "dim"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExpNorm(**kwargs)


def test_dim_mismatch_raises():
    with pytest.raises(ValueError, match="dim=5"):
        ExpNorm(1.0, 1.0, dim=5).log_prob(jnp.zeros(4))


def test_by_path_and_temperature():
    params = {"layer": {"weight": jnp.linspace(-1, 1, 6).reshape(2, 3), "bias": jnp.ones(2)}}
    exp_norm, gauss = ExpNorm(1.5, 0.5), Gaussian(0.2)
    composed = by_path({"layer.weight": exp_norm, "*": gauss})
    expected = exp_norm.log_prob([params["layer"]["weight"]]) + gauss.log_prob(
        params["layer"]["bias"]
    )
    assert float(composed.log_prob(params)) == pytest.approx(float(expected), rel=1e-6)
    draw = jax.jit(composed.sample)(jax.random.key(0), params)
    assert draw["layer"]["weight"].shape == (2, 3)
    cold = Temperature(exp_norm, 0.5)
    assert float(cold.log_prob(params)) == pytest.approx(
        2 * float(exp_norm.log_prob(params)), rel=1e-6
    )
