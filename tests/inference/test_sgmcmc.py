"""Tests for bnn_shift.inference.sgmcmc: the SGLD/SGHMC step on Gaussian targets (exact
stationary laws of the discretised dynamics), the cyclical schedule and the `sgld` driver."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import solve_discrete_lyapunov
from scipy.stats import multivariate_normal

from bnn_shift.data import load_digits
from bnn_shift.inference import Posterior
from bnn_shift.inference.sgmcmc import (
    draw_epochs,
    init,
    sampling_epochs,
    sgld,
    step,
    step_size_schedule,
)
from bnn_shift.models import MLP
from bnn_shift.priors import Gaussian

# --- a conjugate problem expressed as a classifier -------------------------------------------

H4 = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], np.float64)
COLUMN_SCALES = np.array([0.6, 0.8, 1.0, 1.2])
NOISE_STD = 1.0
PRIOR_STD = 1.0


class GaussianRegression(eqx.Module):
    """Linear regression as a two-class model: an example (phi (d,), t) gets logits
    (l, log(1 - e^l)) with l = -(t - phi.w)^2 / (2 s^2) - 1 <= -1, so with every label 0 the
    log-likelihood is l: Gaussian in w up to a constant, and a Gaussian prior is conjugate."""

    w: jax.Array  # (d,)
    noise_std: float = eqx.field(static=True)

    def __call__(self, x: jax.Array) -> jax.Array:  # (d + 1,) -> (2,)
        phi, t = x[:-1], x[-1]
        ell = -0.5 * ((t - phi @ self.w) / self.noise_std) ** 2 - 1.0
        return jnp.stack([ell, jnp.log(-jnp.expm1(ell))])


def conjugate_problem(repeats: int = 4, seed: int = 0):
    """Orthogonal-column design (stacked Hadamard rows, scaled columns), so the posterior
    precision Phi^T Phi / s^2 + I / s_p^2 is diagonal. -> (x (n, 5), y (n,), mean, precision)."""
    phi = np.tile(H4, (repeats, 1)) * COLUMN_SCALES  # (n, 4)
    rng = np.random.default_rng(seed)
    t = phi @ np.array([1.0, -0.5, 0.3, 0.8]) + NOISE_STD * rng.normal(size=len(phi))
    precision = np.diag(phi.T @ phi) / NOISE_STD**2 + 1 / PRIOR_STD**2  # (4,)
    mean = (phi.T @ t / NOISE_STD**2) / precision
    x = np.concatenate([phi, t[:, None]], axis=1).astype(np.float32)
    return x, np.zeros(len(x), np.int32), mean, precision


def log_evidence(x: np.ndarray) -> float:
    """log of the integral of prod_i exp(l_i(w)) N(w; 0, s_p^2 I) over w (float64)."""
    phi, t = x[:, :-1].astype(np.float64), x[:, -1].astype(np.float64)
    n = len(t)
    cov = NOISE_STD**2 * np.eye(n) + PRIOR_STD**2 * phi @ phi.T
    gauss = multivariate_normal(np.zeros(n), cov).logpdf(t)
    return float(-n + gauss + 0.5 * n * math.log(2 * math.pi * NOISE_STD**2))


def regression_model() -> GaussianRegression:
    return GaussianRegression(jnp.zeros(4, jnp.float32), NOISE_STD)


# --- exact laws of the discretised dynamics on N(mu, 1/lam) -----------------------------------


def linear_dynamics(lam: float, eta: float, momentum: float, temperature: float):
    """SGLD/SGHMC on a Gaussian is linear: z' = A z + b xi with z = (theta - mu[, v]).
    -> (A, b b^T)."""
    if momentum == 0:
        return np.array([[1 - eta * lam]]), np.array([[2 * eta * temperature]])
    s2 = 2 * (1 - momentum) * eta * temperature
    a = np.array([[1 - eta * lam, momentum], [-eta * lam, momentum]])
    return a, s2 * np.ones((2, 2))


def stationary_error_scales(a, q, thin: int, n_draws: int) -> tuple[float, float, float]:
    """Stationary var of theta and the standard errors of the sample mean and sample variance
    of n_draws draws taken every `thin` steps (integrated autocorrelation of theta and, for a
    Gaussian process, of theta^2 whose lag-j correlation is rho_j^2)."""
    sigma = solve_discrete_lyapunov(a, q)
    var = sigma[0, 0]
    ak, cov_j = np.linalg.matrix_power(a, thin), sigma
    tau, tau_sq = 1.0, 1.0
    for _ in range(n_draws):
        cov_j = ak @ cov_j
        rho = cov_j[0, 0] / var
        tau, tau_sq = tau + 2 * rho, tau_sq + 2 * rho**2
        if abs(rho) < 1e-6:
            break
    return var, math.sqrt(var * tau / n_draws), math.sqrt(2 * var**2 * tau_sq / n_draws)


MU = np.array([1.0, -2.0, 0.5])
SIGMA = np.array([0.5, 1.0, 1.5])  # exact target N(MU, diag SIGMA^2)
N_CHAINS, N_BURN, N_KEEP, THIN = 200, 1000, 400, 20


def run_chains(eta: float, momentum: float, temperature: float) -> np.ndarray:
    """(N_CHAINS * N_KEEP, 3) draws of the step function on the Gaussian target."""
    lam = jnp.asarray(1 / SIGMA**2, jnp.float32)
    mu = jnp.asarray(MU, jnp.float32)

    def one_step(state, key):
        grad = -lam * (state.position - mu)  # exact (full-batch) gradient of log N
        return step(key, state, grad, eta, momentum=momentum, temperature=temperature), None

    def thinned(state, key):
        state, _ = jax.lax.scan(one_step, state, jax.random.split(key, THIN))
        return state, state.position

    def chain(key):
        k0, k1, k2 = jax.random.split(key, 3)
        start = mu + jnp.sqrt(temperature / lam) * jax.random.normal(k0, (3,))
        state, _ = jax.lax.scan(one_step, init(start, momentum), jax.random.split(k1, N_BURN))
        _, draws = jax.lax.scan(thinned, state, jax.random.split(k2, N_KEEP))
        return draws  # (N_KEEP, 3)

    keys = jax.random.split(jax.random.key(42), N_CHAINS)
    return np.asarray(jax.jit(jax.vmap(chain))(keys), np.float64).reshape(-1, 3)


@pytest.mark.parametrize(
    ("eta", "momentum", "temperature"), [(0.02, 0.0, 1.0), (0.02, 0.9, 0.5)], ids=["sgld", "sghmc"]
)
def test_step_matches_gaussian_target(eta, momentum, temperature):
    """Stationary law of the chain on N(mu, T sigma^2) (tempered): the mean is exact; the Euler
    discretisation inflates the variance by an O(eta) factor, for SGLD 1 / (1 - eta lam / 2)
    (here up to +4.2%, for the lam = 4 coordinate). The sample moments must equal those of the
    discretised dynamics within 4 standard errors (autocorrelation of the thinned chain
    included), and hence the exact target's within |bias| + 4 SE."""
    draws = run_chains(eta, momentum, temperature)  # (N_CHAINS * N_KEEP, 3)
    n_draws = N_KEEP  # per chain; chains are independent
    for j in range(3):
        lam = 1 / SIGMA[j] ** 2
        a, q = linear_dynamics(lam, eta, momentum, temperature)
        var_discrete, se_mean, se_var = stationary_error_scales(a, q, THIN, n_draws)
        se_mean, se_var = se_mean / math.sqrt(N_CHAINS), se_var / math.sqrt(N_CHAINS)
        var_exact = temperature * SIGMA[j] ** 2
        if momentum == 0:
            assert var_discrete == pytest.approx(var_exact / (1 - eta * lam / 2), rel=1e-12)
        mean, var = draws[:, j].mean(), draws[:, j].var()
        assert abs(mean - MU[j]) <= 4 * se_mean
        assert abs(var - var_discrete) <= 4 * se_var
        assert abs(var - var_exact) <= abs(var_discrete - var_exact) + 4 * se_var
        if j == 0 and momentum == 0:  # sharp enough to resolve the 4.2% bias of SGLD here
            assert 4 * se_var < var_discrete - var_exact


def test_noise_free_step_is_sgd_or_heavy_ball():
    """temperature = 0 (the exploration phase) leaves the deterministic updates."""
    key = jax.random.key(0)
    theta = {"a": jnp.array([1.0, 2.0]), "b": jnp.array(-1.0)}
    grad = {"a": jnp.array([0.5, -1.0]), "b": jnp.array(2.0)}
    out = step(key, init(theta), grad, 0.1, temperature=0.0)
    assert out.velocity is None
    np.testing.assert_allclose(out.position["a"], [1.05, 1.9], rtol=1e-6)
    state = init(theta, momentum=0.9)
    state = step(key, state, grad, 0.1, momentum=0.9, temperature=0.0)
    state = step(key, state, grad, 0.1, momentum=0.9, temperature=0.0)
    # v1 = 0.1 g, v2 = 0.9 v1 + 0.1 g = 0.19 g; theta2 = theta + 0.29 g
    np.testing.assert_allclose(state.velocity["b"], 0.38, rtol=1e-6)
    np.testing.assert_allclose(state.position["b"], -1.0 + 0.58, rtol=1e-6)


def test_cyclical_schedule_values():
    lr, total, cycles = 0.1, 100, 5  # cycle length 20
    schedule = step_size_schedule(lr, total, cycles)
    values = np.asarray(schedule(jnp.arange(total)))
    np.testing.assert_allclose(values[::20], lr, rtol=1e-6)  # every cycle restarts at lr
    np.testing.assert_allclose(values[10::20], lr / 2, rtol=1e-5)  # half way: lr / 2
    end = 0.5 * lr * (math.cos(math.pi * 19 / 20) + 1)
    np.testing.assert_allclose(values[19::20], end, rtol=1e-4)  # just before a restart
    assert end < 0.01 * lr
    assert np.all(np.diff(values.reshape(cycles, 20), axis=1) < 0)  # decreasing within a cycle
    np.testing.assert_allclose(np.asarray(step_size_schedule(lr, total)(jnp.arange(5))), lr)


def test_draw_epochs_and_phases():
    # 3 cycles of 4 epochs; exploration is the first floor(0.5 * 4) = 2 of each cycle
    np.testing.assert_array_equal(
        sampling_epochs(12, 3, 0.5), np.tile([False, False, True, True], 3)
    )
    np.testing.assert_array_equal(draw_epochs(12, 0, 1, 3, 0.5), [2, 3, 6, 7, 10, 11])
    np.testing.assert_array_equal(draw_epochs(12, 0, 2, 3, 0.5), [3, 7, 11])  # from cycle end
    np.testing.assert_array_equal(draw_epochs(12, 7, 1, 3, 0.5), [7, 10, 11])  # burn-in first
    np.testing.assert_array_equal(draw_epochs(10, 4, 3, 1, 0.8), [6, 9])  # constant schedule


def test_sgld_driver_on_conjugate_regression():
    """Full batch, so each epoch is one exact-gradient SGLD step with eta = lr / n on the
    tempered Gaussian posterior: an AR(1) per coordinate with a = 1 - eta lam and stationary
    variance T / (lam (1 - eta lam / 2)) (an O(eta) excess of up to 29% here, for the largest lam).
    """
    x, y, mean, precision = conjugate_problem()
    n, lr, temperature, n_epochs, n_burnin = len(x), 0.3, 0.5, 4000, 100
    post = sgld(
        regression_model(),
        Gaussian(PRIOR_STD),
        x,
        y,
        learning_rate=lr,
        n_epochs=n_epochs,
        batch_size=None,
        n_burnin_epochs=n_burnin,
        temperature=temperature,
        seed=3,
        progress=False,
    )
    w = np.asarray(post.draws.w, np.float64)  # (n_draws, 4)
    assert w.shape == (n_epochs - n_burnin, 4)
    assert post.attrs["method"] == "sgld" and post.kind == "chain"
    assert post.attrs["draw_epochs"] == list(range(n_burnin, n_epochs))
    eta = lr / n
    for j in range(4):
        a, q = linear_dynamics(precision[j], eta, 0.0, temperature)
        var_discrete, se_mean, se_var = stationary_error_scales(a, q, 1, len(w))
        assert abs(w[:, j].mean() - mean[j]) <= 4 * se_mean
        assert abs(w[:, j].var() - var_discrete) <= 4 * se_var
    # the first epoch's loss is -(log lik + log prior)/n at the start w = 0
    t = x[:, -1].astype(np.float64)
    loglik = np.sum(-0.5 * t**2 / NOISE_STD**2 - 1)
    logprior = -2 * math.log(2 * math.pi * PRIOR_STD**2)
    assert post.stats["loss"][0, 0] == pytest.approx(-(loglik + logprior) / n, rel=1e-5)
    assert post.stats["loss"].shape == post.stats["learning_rate"].shape == (n_epochs, 1)


@pytest.fixture(scope="module")
def digits():
    return load_digits().subset(300, 50, seed=0)


def test_cyclical_sghmc_on_digits(digits, tmp_path):
    model = MLP(64, (16,), 10, key=jax.random.key(0))
    post = sgld(
        model,
        Gaussian(1.0),
        digits.x_train,
        digits.y_train,
        learning_rate=0.05,
        n_epochs=8,
        batch_size=100,  # 3 steps per epoch, 12 per cycle
        n_burnin_epochs=0,
        momentum=0.9,
        cycles=2,
        explore_fraction=0.5,
        seed=1,
        progress=False,
    )
    assert isinstance(post, Posterior) and post.attrs["method"] == "sghmc"
    assert post.attrs["draw_epochs"] == [2, 3, 6, 7] and post.n_draws == 4
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(post.draws))
    w = post.draws.layers[0].weight
    assert not np.allclose(w[0], w[1])
    last_step = 3 * np.arange(8) + 2  # learning rate at each epoch's last step
    expected = 0.025 * (np.cos(np.pi * (last_step % 12) / 12) + 1)
    np.testing.assert_allclose(post.stats["learning_rate"][:, 0], expected, rtol=1e-5)
    assert np.all(np.isfinite(post.stats["loss"]))
    proba = post.predict_proba(digits.x_test)
    assert proba.shape == (50, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    loaded = Posterior.load(post.save(tmp_path / "sghmc.nc"), model)
    np.testing.assert_allclose(loaded.predict_proba(digits.x_test), proba, rtol=1e-6)
    assert loaded.attrs == post.attrs
    np.testing.assert_array_equal(loaded.stats["loss"], post.stats["loss"])


BASE = {"learning_rate": 0.1, "n_epochs": 4, "batch_size": None, "n_burnin_epochs": 1}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": math.nan}, "learning_rate"),
        ({"n_epochs": 0}, "n_epochs"),
        ({"n_burnin_epochs": 4}, "n_burnin_epochs"),
        ({"n_burnin_epochs": -1}, "n_burnin_epochs"),
        ({"thin_epochs": 0}, "thin_epochs"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"cycles": 3}, "cycles"),
        ({"cycles": 0}, "cycles"),
        ({"explore_fraction": 1.0}, "explore_fraction"),
        ({"temperature": 0.0}, "temperature"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 17}, "batch_size"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    x, y, _, _ = conjugate_problem()
    with pytest.raises(ValueError, match=match):
        sgld(regression_model(), Gaussian(1.0), x, y, progress=False, **(BASE | kwargs))


def test_bad_data_raise():
    x, y, _, _ = conjugate_problem()
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        sgld(regression_model(), Gaussian(1.0), x, y + 2, progress=False, **BASE)
    x_nan = x.copy()
    x_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sgld(regression_model(), Gaussian(1.0), x_nan, y, progress=False, **BASE)
    with pytest.raises(ValueError, match="cannot take examples"):
        sgld(regression_model(), Gaussian(1.0), x[:, :3], y, progress=False, **BASE)
