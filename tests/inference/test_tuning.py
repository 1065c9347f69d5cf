"""Step-size tuning (bnn_shift.inference.tuning) and hmc(step_size="auto")."""

from __future__ import annotations

import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.data import load_digits
from bnn_shift.inference import hmc
from bnn_shift.inference.tuning import stable_step_size, tune_step_size
from bnn_shift.models import MLP
from bnn_shift.priors import Gaussian

from .kernels import engine_and_target

DIM = 100
DATA = (jnp.zeros((1, 1)), jnp.zeros((1,), jnp.int32))  # unused by the Gaussian target
PRECISION = jnp.logspace(0, 3, DIM)


def _loglik(p, data):
    return -0.5 * jnp.sum(PRECISION * p["w"] ** 2)[None]


def _gaussian_kernel(step_size: float, n_steps: int):
    """HMC on a DIM-dimensional Gaussian whose scales spread over a decade and a half.

    Spread scales, as in a network posterior, keep the acceptance rate monotone in the step
    size; a single scale would make it oscillate with the trajectory's phase.
    -> (engine, target, state at 0).
    """
    params = {"w": jnp.zeros(DIM)}
    engine, target = engine_and_target(
        _loglik, Gaussian(0.5), params, step_size=step_size, n_steps=n_steps
    )
    return engine, target, engine.init(target, params, DATA)


def _realised_acceptance(step_size: float, n_iter: int = 400) -> float:
    engine, target, state = _gaussian_kernel(step_size, 10)

    def one(state, key):
        state, info = engine.step(target, key, state, DATA, jnp.asarray(False))
        return state, info.acceptance_rate

    _, rates = jax.lax.scan(one, state, jax.random.split(jax.random.key(7), n_iter))
    return float(rates.mean())


@pytest.mark.parametrize("target", [0.65, 0.9])
def test_tuned_step_reaches_target_acceptance(target):
    engine, posterior, state = _gaussian_kernel(0.01, 10)
    found = tune_step_size(
        engine,
        posterior,
        state,
        DATA,
        jax.random.key(0),
        initial_step_size=0.01,
        n_tune=300,
        target_acceptance=target,
    )
    assert found.step_sizes.shape == found.acceptance_rate.shape == (300,)
    # Acceptance probabilities lie in [0, 1] (sd <= 0.5): 400 draws give a standard error
    # <= 0.025 if independent; 0.08 allows ~3 SE plus the dual-averaging offset.
    assert abs(_realised_acceptance(found.step_size) - target) < 0.08


def test_lower_target_gives_larger_step():
    engine, target, state = _gaussian_kernel(0.01, 10)
    tune = lambda t: (
        tune_step_size(
            engine,
            target,
            state,
            DATA,
            jax.random.key(0),
            initial_step_size=0.01,
            n_tune=200,
            target_acceptance=t,
        ).step_size
    )
    assert tune(0.6) > tune(0.95)


# With the prior metric (M^-1 = 0.5^2) the stiffest direction (precision 1e3) oscillates at
# omega = sqrt(1e3) * 0.5 ~ 15.8, and leapfrog is unstable for h > 2 / omega ~ 0.126.
STABILITY_LIMIT = 2 / (math.sqrt(1e3) * 0.5)
TAU = 2.0


def _full_length_kernel(step_size: float):
    return _gaussian_kernel(step_size, math.ceil(TAU / step_size))[0]


def test_burn_in_refuses_a_diverging_proposal():
    # 2.4x the stability limit: a finite blow-up
    engine, target, state = _gaussian_kernel(0.3, 4)
    step = eqx.filter_jit(engine.step)
    new, info = step(target, jax.random.key(0), state, DATA, jnp.asarray(True))
    assert bool(info.diverging) and not bool(info.accepted) and not bool(info.mh)
    np.testing.assert_array_equal(new.position["w"], state.position["w"])


def _checked(step_size: float):
    _, target, state = _gaussian_kernel(0.01, 1)
    return stable_step_size(
        _full_length_kernel,
        target,
        state,
        DATA,
        jax.random.key(1),
        step_size=step_size,
        target_acceptance=0.8,
    )


def test_unstable_step_is_halved_below_the_stability_limit():
    checked = _checked(0.5)
    assert checked.step_size < STABILITY_LIMIT
    assert checked.step_size == 0.5 / 2**checked.n_halvings and checked.n_halvings >= 2
    assert checked.acceptance_rate >= 0.4


def test_stable_step_is_kept():
    checked = _checked(0.02)
    assert checked.step_size == 0.02 and checked.n_halvings == 0


@pytest.fixture(scope="module")
def digits():
    return load_digits().subset(200, 50, seed=0)


def _auto_run(digits, **kwargs):
    return hmc(
        MLP(64, (8,), 10, key=jax.random.key(0)),
        Gaussian(0.3),
        digits.x_train,
        digits.y_train,
        step_size="auto",
        trajectory_length=0.2,
        n_iterations=3,
        n_burnin=1,
        n_tune=30,
        progress=False,
        **kwargs,
    )


@pytest.mark.slow
def test_hmc_auto_step_size_is_recorded_and_sets_leapfrog_count(digits):
    run = _auto_run(digits)
    h = run.attrs["step_size"]
    assert 0 < h < 0.2
    assert run.attrs["n_leapfrog_steps"] == math.ceil(0.2 / h - 1e-9)
    assert "dual averaging" in run.attrs["step_size_tuning"]
    assert "halved" in run.attrs["step_size_tuning"]
    assert 0 <= run.attrs["check_acceptance_rate"] <= 1
    assert 0 <= run.attrs["tuning_acceptance_rate"] <= 1
    # gradients: 30 tuning trajectories of 10 leapfrogs, then 3 full-length trajectories at
    # each step tried (the final one times 2^k, k = halvings .. 0)
    halvings = int(re.search(r"halved (\d+) times", run.attrs["step_size_tuning"]).group(1))
    tried = [math.ceil(0.2 / (h * 2**k) - 1e-9) for k in range(halvings + 1)]
    assert run.attrs["n_tuning_gradients"] == 30 * 10 + 3 * sum(tried)
    jitter = run.attrs["step_jitter"]  # each trajectory's step lies within h * (1 -+ jitter)
    steps = run.stats["step_size"]
    assert np.all(
        (steps >= (1 - jitter) * h * (1 - 1e-6)) & (steps <= (1 + jitter) * h * (1 + 1e-6))
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step_size": "fast"}, '"auto"'),
        ({"step_size": "auto", "target_acceptance": 1.0}, "target_acceptance"),
        ({"step_size": "auto", "n_tune": 0}, "n_tune"),
    ],
)
def test_bad_tuning_settings_are_named(digits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        hmc(
            MLP(64, (8,), 10, key=jax.random.key(0)),
            Gaussian(0.3),
            digits.x_train,
            digits.y_train,
            trajectory_length=0.2,
            n_iterations=2,
            n_burnin=1,
            progress=False,
            **kwargs,
        )


def test_cli_accepts_auto_step_size():
    from bnn_shift.cli import build_parser

    parse = lambda v: build_parser().parse_args(["compare-priors", "--step-size", v]).step_size
    assert parse("auto") == "auto" and parse("1e-4") == 1e-4
    with pytest.raises(SystemExit):
        parse("fast")
