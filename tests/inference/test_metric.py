"""Tests for bnn_shift.inference.metric: the prior-derived mass matrix as a BlackJAX Metric."""

from __future__ import annotations

import math

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.inference.metric import prior_metric, whiten_momentum
from bnn_shift.priors import EmpCov

D = 4
Z5 = 5.0  # standard errors allowed in each statistical check


@pytest.fixture(scope="module")
def emp() -> EmpCov:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, D)) * np.array([2.0, 1.0, 0.5, 0.1])
    x[:, 1] += 0.8 * x[:, 0]  # correlated inputs
    return EmpCov.from_data(x, scale=0.3, eps=1e-4)


def mass_matrices(factor):
    a = np.asarray(factor.sqrt_inv_mass, np.float64)
    m_half = np.asarray(factor.sqrt_mass, np.float64)
    return m_half @ m_half, a @ a  # M, M^-1


def prior_cov(prior: EmpCov) -> np.ndarray:
    vecs = np.asarray(prior.eigvecs, np.float64)
    return (vecs * np.asarray(prior.prior_var, np.float64)) @ vecs.T


def test_momentum_covariance_is_the_mass_matrix(emp):
    n = 20_000
    position = {"w": jnp.zeros((n, D)), "b": jnp.zeros(n)}  # rows of w are independent draws
    factors = [None, *emp.preconditioner([position["w"]])]  # leaf order: b, w
    metric = prior_metric(factors)
    p = metric.sample_momentum(jax.random.key(0), position)
    mass, _ = mass_matrices(factors[1])
    # M = (C / scale^2)^-1: stiff prior directions get heavy momenta
    np.testing.assert_allclose(
        mass, np.linalg.inv(prior_cov(emp) / emp.scale**2), rtol=1e-3, atol=1e-3 * mass.max()
    )
    w = np.asarray(p["w"], np.float64)
    sample = w.T @ w / n  # zero mean known
    # entry (i, j) of a zero-mean Gaussian sample covariance has SE sqrt((M_ii M_jj + M_ij^2)/n)
    se = np.sqrt((np.outer(np.diag(mass), np.diag(mass)) + mass**2) / n)
    assert np.all(np.abs(sample - mass) < Z5 * se)
    b = np.asarray(p["b"], np.float64)  # identity-mass leaf: N(0, 1)
    assert abs(b.var() - 1) < Z5 * math.sqrt(2 / n)


def test_kinetic_energy_is_half_p_minv_p(emp):
    (factor,) = emp.preconditioner([jnp.zeros((3, D))])
    metric = prior_metric([factor, None])
    rng = np.random.default_rng(1)
    p_w = rng.normal(size=(3, D)).astype(np.float32)
    p_b = rng.normal(size=5).astype(np.float32)
    mass, _ = mass_matrices(factor)
    pw = p_w.astype(np.float64)
    expected = 0.5 * np.sum(pw * np.linalg.solve(mass, pw.T).T) + 0.5 * np.sum(
        p_b.astype(np.float64) ** 2
    )
    got = float(metric.kinetic_energy([jnp.asarray(p_w), jnp.asarray(p_b)]))
    assert got == pytest.approx(expected, rel=1e-4)


def test_whitened_momenta_are_standard_normal(emp):
    n = 20_000
    (factor,) = emp.preconditioner([jnp.zeros((n, D))])
    metric = prior_metric([factor])
    p = metric.sample_momentum(jax.random.key(2), [jnp.zeros((n, D))])
    z = np.asarray(whiten_momentum([factor], p)[0], np.float64)
    cov = z.T @ z / n
    # identity target: SE of a diagonal entry sqrt(2/n), of an off-diagonal one sqrt(1/n)
    se = np.sqrt((1 + np.eye(D)) / n)
    assert np.all(np.abs(cov - np.eye(D)) < Z5 * se)
    # whitening is p -> p M^-1/2, so K = |z|^2 / 2
    assert float(metric.kinetic_energy(p)) == pytest.approx(0.5 * np.sum(z**2), rel=1e-4)


def test_scale_round_trips(emp):
    (factor,) = emp.preconditioner([jnp.zeros((2, D))])
    metric = prior_metric([factor, None])
    v = [jnp.arange(8.0).reshape(2, D) / 7, jnp.array([1.0, -2.0])]
    up = metric.scale(None, v, inv=False, trans=False)
    back = metric.scale(None, up, inv=True, trans=False)
    for a, b in zip(back, v):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(up[1], v[1])  # identity leaf untouched


def test_factor_count_mismatch_raises(emp):
    (factor,) = emp.preconditioner([jnp.zeros((2, D))])
    metric = prior_metric([factor])
    with pytest.raises(ValueError, match="1 factors for 2 parameter arrays"):
        metric.kinetic_energy([jnp.zeros((2, D)), jnp.zeros(3)])


@pytest.mark.parametrize("algorithm", ["hmc", "nuts"])
def test_metric_works_inside_blackjax(emp, algorithm):
    """Target: the EmpCov prior itself on a (2, 4) weight, i.e. rows iid N(0, C) with prior
    variances from 7.5e-4 to 0.32. With inverse mass C / scale^2 every direction oscillates
    with omega = 1 / scale, so 8 steps of h = scale / 5 (tau = 1.6 scale, near a quarter
    period) give nearly independent draws each iteration; with the identity mass the stiffest
    direction (omega = 37) makes h = 0.06 unstable (h * omega > 2)."""
    like = jnp.zeros((2, D))
    (factor,) = emp.preconditioner([like])
    metric = prior_metric([factor])
    logdensity = lambda position: emp.log_prob(position)
    h = emp.scale / 5
    if algorithm == "hmc":
        sampler = blackjax.hmc(logdensity, h, inverse_mass_matrix=metric, num_integration_steps=8)
        n_chains, n_iter = 2000, 10
    else:
        sampler = blackjax.nuts(logdensity, h, inverse_mass_matrix=metric, max_num_doublings=4)
        n_chains, n_iter = 500, 4

    @jax.jit
    def run(key):
        keys = jax.random.split(key, n_chains)
        state = jax.vmap(sampler.init)(jnp.zeros((n_chains, *like.shape)))

        def one(state, key):
            state, info = jax.vmap(sampler.step)(jax.random.split(key, n_chains), state)
            return state, info.acceptance_rate.mean()

        return jax.lax.scan(one, state, jax.random.split(keys[0], n_iter))

    state, acc = run(jax.random.key(0))
    assert float(acc[-1]) > 0.9
    w = np.asarray(state.position, np.float64).reshape(-1, D)  # 2 independent rows per chain
    cov = prior_cov(emp)
    lam, vecs = np.linalg.eigh(cov)
    z = w @ vecs  # independent N(0, lam_k) coordinates
    n = len(z)
    assert np.all(np.abs(z.mean(0)) < Z5 * np.sqrt(lam / n))
    assert np.all(np.abs(z.var(0) / lam - 1) < Z5 * math.sqrt(2 / (n - 1))), z.var(0) / lam

    if algorithm == "hmc":  # the same step with the identity mass is hopeless
        plain = blackjax.hmc(
            logdensity, h, inverse_mass_matrix=jnp.ones(2 * D), num_integration_steps=8
        )
        state0 = plain.init(jnp.asarray(w[:2].reshape(2, D), jnp.float32))
        _, info = jax.jit(plain.step)(jax.random.key(1), state0)
        assert float(info.acceptance_rate) < 0.01
