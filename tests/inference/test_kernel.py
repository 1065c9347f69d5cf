"""Tests for the full-batch HMC kernel (bnn_shift.inference.kernel).

Statistical checks run thousands of independent chains in parallel (vmap) and compare the final
states' moments with the exact Gaussian posterior: final states of independent chains are iid,
so the Monte Carlo standard errors below are exact (no autocorrelation correction needed).
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.inference import default_trajectory_length, n_leapfrog_steps
from bnn_shift.inference.metric import prior_metric
from bnn_shift.priors import EmpCov, Gaussian, Temperature

from .kernels import engine_and_target

N_CHAINS = 2000
N_ITER = 30
Z5 = 5.0  # number of standard errors allowed in every statistical check


def chain_runner(engine, target, data, *, n_iter: int = N_ITER):
    """A compiled function (key, start positions (N, ...), mh) -> (final positions, mean
    acceptance per iteration) running N independent chains (mh=False: warmup steps)."""

    @jax.jit
    def run(key, position, mh):
        state = jax.vmap(engine.init, (None, 0, None))(target, position, data)
        step = jax.vmap(engine.step, (None, 0, 0, None, None))

        def one(state, key):
            keys = jax.random.split(key, N_CHAINS)
            state, info = step(target, keys, state, data, ~mh)
            return state, info.acceptance_rate.mean()

        state, acc = jax.lax.scan(one, state, jax.random.split(key, n_iter))
        return state.position, acc

    return lambda start, mh, seed=0: run(jax.random.key(seed), start, jnp.asarray(mh))


def check_gaussian_moments(draws: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> None:
    """draws (N, d) iid: compare with N(mean, cov) along the eigenvectors of cov, where the
    coordinates z_k are independent N(0, lam_k): SE of the mean sqrt(lam_k/N), SE of the
    sample variance lam_k*sqrt(2/(N-1))."""
    lam, vecs = np.linalg.eigh(cov)
    z = (draws - mean) @ vecs
    n = len(draws)
    assert np.all(np.abs(z.mean(0)) < Z5 * np.sqrt(lam / n)), (z.mean(0), np.sqrt(lam / n))
    ratio = z.var(0, ddof=1) / lam
    assert np.all(np.abs(ratio - 1) < Z5 * math.sqrt(2 / (n - 1))), ratio


# --- (1) a correlated Gaussian posterior: Bayesian linear regression --------------------------

D = 3
N_DATA = 20


def regression_problem():
    """theta ~ N(0, I), y_i ~ N(x_i . theta, 1): the posterior is N(mu, S) with
    S = (I + X^T X)^-1 and mu = S X^T y; the correlated x make S correlated (rho ~ -0.7)."""
    rng = np.random.default_rng(0)
    mix = np.array([[1, 0, 0], [0.9, 0.45, 0], [0.2, 0.3, 0.8]])
    x = rng.normal(size=(N_DATA, D)) @ mix.T * 0.35
    y = x @ np.array([0.5, -1.0, 0.8]) + rng.normal(size=N_DATA)
    precision = np.eye(D) + x.T @ x
    cov = np.linalg.inv(precision)
    mean = cov @ x.T @ y
    return x, y, mean, cov, precision


def regression_loglik(params, data):
    x, y = data
    return -0.5 * (y - x @ params["theta"]) ** 2 - 0.5 * math.log(2 * math.pi)  # (n,)


def test_samples_a_correlated_gaussian_posterior():
    x, y, mean, cov, precision = regression_problem()
    omega = np.sqrt(np.linalg.eigvalsh(precision))  # [1.06, 1.40, 2.76]
    # tau = 0.8 keeps |cos(omega * tau)| <= 0.67 in every eigendirection, so exact dynamics
    # forget the start by >= 1/3 per iteration; 30 iterations from the overdispersed start
    # N(0, 4I) leave a bias below 1e-5, far under the MC error. h = 0.4 is a coarse step
    # (h * omega_max = 1.1): only the Metropolis test makes the stationary law exact.
    tau, n_steps = 0.8, 2
    assert np.max(np.abs(np.cos(omega * tau))) < 0.7
    engine, target = engine_and_target(
        regression_loglik,
        Gaussian(1.0),
        {"theta": jnp.zeros(D)},
        step_size=tau / n_steps,
        n_steps=n_steps,
        n=N_DATA,
    )
    data = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    start = {"theta": 2.0 * jax.random.normal(jax.random.key(1), (N_CHAINS, D))}

    run = chain_runner(engine, target, data)
    final, acc = run(start, mh=True)
    assert 0.6 < float(acc[-1]) < 1.0  # it moves, and it does reject
    check_gaussian_moments(np.asarray(final["theta"], np.float64), mean, cov)

    # Without the MH correction the coarse leapfrog inflates the stiffest direction's variance
    # (~1.45x, i.e. ~14 standard errors): this check has the power to see a broken accept test.
    final, _ = run(start, mh=False)
    lam, vecs = np.linalg.eigh(cov)
    z = (np.asarray(final["theta"], np.float64) - mean) @ vecs[:, 0]
    assert z.var(ddof=1) / lam[0] > 1 + Z5 * math.sqrt(2 / (N_CHAINS - 1))


# --- (2) the same with an EmpCov prior and its preconditioner ---------------------------------

D_IN = 4
N_ROWS = 2


def empcov_problem():
    """Rows w_r of W (2, 4) ~ N(0, C) with C the EmpCov prior (one near-null input direction,
    prior variance eps = 1e-4); y_ir ~ N(w_r . x_i, 1). Each row's posterior is N(mu_r, S),
    S = (C^-1 + X^T X)^-1, mu_r = S X^T y_r."""
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(200, D_IN)) * np.array([1.0, 0.6, 0.3, 0.8])
    inputs[:, 3] = inputs[:, 0] - inputs[:, 1]  # a linear dependency: a null direction
    prior = EmpCov.from_data(inputs, scale=0.5, eps=1e-4)
    vecs = np.asarray(prior.eigvecs, np.float64)
    c = (vecs * np.asarray(prior.prior_var, np.float64)) @ vecs.T  # the density's covariance
    x = inputs[:25] * 0.3
    w_true = rng.normal(size=(N_ROWS, D_IN)) * 0.5
    y = x @ w_true.T + rng.normal(size=(25, N_ROWS))  # (n, 2)
    cov = np.linalg.inv(np.linalg.inv(c) + x.T @ x)
    means = (cov @ x.T @ y).T  # (2, 4)
    return prior, c, x, y, cov, means


def matrix_loglik(params, data):
    x, y = data
    return -0.5 * jnp.sum((y - x @ params["w"].T) ** 2, axis=1)  # (n,)


def test_samples_a_gaussian_posterior_with_an_empcov_preconditioner():
    prior, c, x, y, cov, means = empcov_problem()
    scale = prior.scale
    # With inverse mass C / scale^2 the dynamics' squared frequencies are the eigenvalues of
    # (I + C X^T X) / scale^2: here omega * scale lies in [1, 1.75], so tau = 0.9 * scale keeps
    # |cos(omega tau)| <= 0.63 (>= 1/3 of the start forgotten per iteration). Without the
    # preconditioner the eps = 1e-4 direction would have omega = 100 and need h < 0.02;
    # here h = tau / 4 = 0.11.
    omega = np.sqrt(np.linalg.eigvals(np.eye(D_IN) + c @ x.T @ x).real) / scale
    tau, n_steps = 0.9 * scale, 4
    assert omega.max() * scale < 1.8 and np.max(np.abs(np.cos(omega * tau))) < 0.65
    assert np.linalg.eigvalsh(c).min() < 2e-4  # a genuinely stiff prior direction
    engine, target = engine_and_target(
        matrix_loglik,
        prior,
        {"w": jnp.zeros((N_ROWS, D_IN))},
        step_size=tau / n_steps,
        n_steps=n_steps,
        n=len(x),
    )
    data = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    start = jax.vmap(lambda k: prior.sample(k, {"w": jnp.zeros((N_ROWS, D_IN))}))(
        jax.random.split(jax.random.key(2), N_CHAINS)
    )
    final, acc = chain_runner(engine, target, data)(start, mh=True)
    assert float(acc[-1]) > 0.6
    w = np.asarray(final["w"], np.float64)  # (N, 2, 4)
    for r in range(N_ROWS):
        check_gaussian_moments(w[:, r], means[r], cov)


# --- (3) the MH switch -------------------------------------------------------------------------


@functools.cache
def simple_stepper(step_size: float, n_steps: int):
    """64 chains of the regression posterior at theta = 0 and a compiled, vmapped step."""
    x, y, *_ = regression_problem()
    engine, target = engine_and_target(
        regression_loglik,
        Gaussian(1.0),
        {"theta": jnp.zeros(D)},
        step_size=step_size,
        n_steps=n_steps,
        n=N_DATA,
    )
    data = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    init = jax.jit(jax.vmap(lambda q: engine.init(target, q, data)))
    state = init({"theta": jnp.zeros((64, D))})
    step = jax.jit(jax.vmap(lambda k, s, w: engine.step(target, k, s, data, w), (0, 0, None)))
    keys = jax.random.split(jax.random.key(0), 64)
    return lambda mh: step(keys, state, jnp.asarray(not mh)), state


def test_without_mh_every_stable_proposal_is_accepted():
    run, state = simple_stepper(0.5, 3)  # stable, but with energy errors of up to a few nats

    burn, info = run(False)
    assert np.all(info.accepted) and not np.any(info.mh) and not np.any(info.diverging)
    assert np.all(burn.position["theta"] != state.position["theta"])  # the state is the proposal

    kept, info_mh = run(True)
    assert 0 < np.mean(info_mh.accepted) < 1 and np.all(info_mh.mh)  # MH would refuse some
    rejected = ~np.asarray(info_mh.accepted)
    np.testing.assert_array_equal(
        kept.position["theta"][rejected], state.position["theta"][rejected]
    )
    # same key, same proposal: the two runs differ only in the accept decision
    np.testing.assert_array_equal(info.log_accept_ratio, info_mh.log_accept_ratio)


def test_without_mh_a_diverging_proposal_is_refused():
    run, state = simple_stepper(30.0, 3)  # wildly unstable leapfrog: h * omega_max = 83
    for mh in (False, True):
        kept, info = run(mh)
        assert np.all(np.isfinite(info.log_accept_ratio))  # finite, but hopeless proposals
        assert np.all(info.log_accept_ratio < -1e3) and np.all(info.diverging)
        assert not np.any(info.accepted) and np.all(info.acceptance_rate < 1e-30)
        np.testing.assert_array_equal(kept.position["theta"], state.position["theta"])
        np.testing.assert_array_equal(kept.logdensity, state.logdensity)


def test_acceptance_drops_with_a_huge_step():
    _, small = simple_stepper(0.05, 3)[0](True)
    _, huge = simple_stepper(30.0, 3)[0](True)
    assert float(np.mean(small.accepted)) > 0.9
    assert float(np.mean(huge.accepted)) == 0.0


# --- (4) non-finite proposals --------------------------------------------------------------


@pytest.mark.parametrize("mh", [False, True], ids=["burn-in", "mh"])
def test_nan_loglik_at_the_proposal_is_rejected(mh):
    """The log-likelihood is finite only at the start point: any move gives NaN."""

    def loglik(params, data):
        theta = params["theta"]
        return jnp.where(jnp.all(theta == 0.0), -0.5 * jnp.sum(theta**2), jnp.nan)[None]

    engine, target = engine_and_target(
        loglik, Gaussian(1.0), {"theta": jnp.zeros(D)}, step_size=0.1, n_steps=3
    )
    data = (jnp.zeros((1, 1)), jnp.zeros(1, jnp.int32))
    state = eqx.filter_jit(engine.init)(target, {"theta": jnp.zeros(D)}, data)
    assert np.isfinite(state.logdensity)
    step = eqx.filter_jit(engine.step)
    new, info = step(target, jax.random.key(0), state, data, jnp.asarray(not mh))
    assert not bool(info.accepted)
    assert bool(info.diverging)
    assert float(info.acceptance_rate) == 0.0
    assert float(info.log_accept_ratio) == -np.inf
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)


# --- (5) split energy accounting ------------------------------------------------------------


def test_log_accept_ratio_is_accurate_where_float32_totals_are_large():
    """n = 100,000 examples with log-likelihood ~ -11 each: the tempered log density is
    ~ -1.1e6, where float32 numbers are 0.125 apart, while the energy change of one
    trajectory is ~0.01. A ratio formed from totals is off by ~0.1; the kernel sums per-example
    differences instead."""
    n, d, offset = 100_000, 2, 10.0
    rng = np.random.default_rng(0)
    y = rng.normal([0.7, -0.3], 1.0, size=(n, d)).astype(np.float32)
    data = (jnp.asarray(y), jnp.zeros(n))

    def loglik(params, data):
        return jnp.sum(-0.5 * (data[0] - params["theta"]) ** 2, axis=1) - offset

    prior = Gaussian(1.0)
    h, n_steps = 1e-3, 5  # posterior sd 1/sqrt(n) = 3e-3, omega = 316: h * omega = 0.3
    engine, target = engine_and_target(
        loglik, prior, {"theta": jnp.zeros(d)}, step_size=h, n_steps=n_steps, n=n, step_jitter=0.0
    )
    y64 = y.astype(np.float64)

    def grad64(t):  # gradient of the float64 log posterior
        return np.sum(y64 - t, axis=0) - t

    theta0 = y64.mean(0) * n / (n + 1) + rng.normal(size=d) / math.sqrt(n)
    state = eqx.filter_jit(engine.init)(target, {"theta": jnp.asarray(theta0, jnp.float32)}, data)
    step = eqx.filter_jit(engine.step)
    naive_errors, tols = [], []
    for i in range(5):
        key = jax.random.key(i)
        new, info = step(target, key, state, data, jnp.asarray(True))  # warmup: keep it
        # the momentum the kernel drew, then the same trajectory in float64
        p0 = prior_metric([None]).sample_momentum(jax.random.split(key, 3)[0], state.position)
        p = np.asarray(p0["theta"], np.float64)
        t = np.asarray(state.position["theta"], np.float64)
        for _ in range(n_steps):
            p = p + 0.5 * h * grad64(t)
            t = t + h * p
            p = p + 0.5 * h * grad64(t)
        t0 = np.asarray(state.position["theta"], np.float64)
        t1 = np.asarray(new.position["theta"], np.float64)
        np.testing.assert_allclose(t1, t, atol=1e-6)  # float32 and float64 paths agree
        # Truth in float64 as a difference of totals: the loglik_fn's own per-example values,
        # the exact Gaussian prior and kinetic energies.
        ll0 = np.asarray(state.loglik, np.float64)
        ll1 = np.asarray(new.loglik, np.float64)
        lp = lambda th: -0.5 * np.sum(th**2)
        p0 = np.asarray(p0["theta"], np.float64)
        truth = (ll1.sum() - ll0.sum()) + (lp(t1) - lp(t0)) + 0.5 * (p0 @ p0 - p @ p)
        # Error budget: the per-example differences are exact in float32 (Sterbenz), and
        # summing n of them costs at most ~log2(n) * 2^-24 * sum|diff_i|; the float64
        # momentum differs from the kernel's by ~n_steps*h*|float32 gradient error| ~1e-5,
        # which moves the kinetic energy by < 1e-4.
        tol = (math.log2(n) + 1) * 2.0**-24 * np.sum(np.abs(ll1 - ll0)) + 1e-4
        ours = float(info.log_accept_ratio)
        assert abs(ours - truth) < tol, (ours, truth, tol)
        # the naive float32 difference of totals is far worse on this case
        energy0 = -state.logdensity + 0.5 * jnp.sum(jnp.asarray(p0, jnp.float32) ** 2)
        naive = float(energy0 - info.energy)
        naive_errors.append(abs(naive - truth))
        tols.append(tol)
        state = new
    assert abs(float(state.logdensity)) > 1e6  # the totals really are large
    assert max(naive_errors) > 20 * max(tols)  # and the case defeats a difference of totals


# --- (6) trajectory length and number of steps ---------------------------------------------


@pytest.mark.parametrize(
    ("weight_decay", "temperature", "tau"),
    [
        (100, 1.0, 0.15708),
        (3, 1.0, 0.9069),
        (10, 1.0, 0.4967),
        (100, 0.01, 0.015708),
        (3, 0.01, 0.09069),
    ],
)
def test_default_trajectory_length(weight_decay, temperature, tau):
    # (pi/2) * sigma * sqrt(T) with sigma = 1/sqrt(wd): the table in REFERENCE 1.5
    prior = Gaussian(1 / math.sqrt(weight_decay))
    assert default_trajectory_length(prior, temperature) == pytest.approx(tau, rel=1e-4)
    tempered = Temperature(prior, temperature)
    assert default_trajectory_length(tempered) == pytest.approx(tau, rel=1e-4)


@pytest.mark.parametrize(
    ("tau", "step", "max_steps", "n"),
    [
        (0.15, 1e-5, 15_500, 15_000),
        (0.9, 6e-5, 15_500, 15_000),
        (0.49, 1e-4, 5_000, 4_900),
        (0.015, 6.3e-7, 25_500, 23_810),
        (0.157, 1e-4, 2_000, 1_570),
        (3 * 0.1, 0.1, 10, 3),  # 0.30000000000000004 / 0.1 must not round up to 4
        (0.07, 0.01, 10, 7),  # 7.000000000000001 -> 7
        (0.25, 0.1, 10, 3),
        (1e-3, 1.0, 1, 1),
    ],
)
def test_n_leapfrog_steps(tau, step, max_steps, n):
    assert n_leapfrog_steps(tau, step, max_steps) == n


def test_n_leapfrog_steps_errors():
    with pytest.raises(ValueError, match="max_steps=14999"):
        n_leapfrog_steps(0.15, 1e-5, 14_999)
    for bad in (0.0, -1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="step_size"):
            n_leapfrog_steps(0.1, bad, 100)
        with pytest.raises(ValueError, match="trajectory_length"):
            n_leapfrog_steps(bad, 0.01, 100)


# --- (7) cost: one gradient per leapfrog step --------------------------------------------------


def test_one_gradient_evaluation_per_leapfrog_step():
    calls = []

    @jax.custom_vjp
    def tap(x):
        return x

    def tap_fwd(x):
        return x, None

    def tap_bwd(_, g):
        jax.debug.callback(lambda: calls.append(1))
        return (g,)

    tap.defvjp(tap_fwd, tap_bwd)

    def loglik(params, data):
        return regression_loglik({"theta": tap(params["theta"])}, data)

    x, y, *_ = regression_problem()
    data = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    n_steps = 7
    engine, target = engine_and_target(
        loglik, Gaussian(1.0), {"theta": jnp.zeros(D)}, step_size=0.05, n_steps=n_steps, n=N_DATA
    )
    assert engine.n_steps == n_steps and engine.step_size == jnp.float32(0.05)
    state = eqx.filter_jit(engine.init)(target, {"theta": jnp.zeros(D)}, data)
    jax.effects_barrier()
    assert len(calls) == 1
    step = eqx.filter_jit(engine.step)
    for i in range(3):
        calls.clear()
        state, info = step(target, jax.random.key(i), state, data, jnp.asarray(i == 0))
        jax.effects_barrier()
        assert len(calls) == n_steps  # the start gradient is carried over, none recomputed
        assert int(info.n_steps) == n_steps
