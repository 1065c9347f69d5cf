"""Reduced-precision trajectories: only the proposal changes, the accept test keeps it exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.inference.likelihood import categorical_loglik, with_precision
from bnn_shift.models import MLP, partition_params
from bnn_shift.priors import Gaussian

from .kernels import engine_and_target
from .test_kernel import (
    N_CHAINS,
    N_DATA,
    D,
    chain_runner,
    check_gaussian_moments,
    regression_loglik,
    regression_problem,
)


def test_a_wrong_trajectory_gradient_still_samples_the_exact_posterior():
    """Leapfrog driven by a deliberately wrong likelihood (scaled by 0.7, like a crude
    low-precision gradient) only lowers acceptance: the MH test uses the exact likelihood."""
    x, y, mean, cov, _ = regression_problem()
    data = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    engine, target = engine_and_target(
        regression_loglik,
        Gaussian(1.0),
        {"theta": jnp.zeros(D)},
        step_size=0.4,
        n_steps=2,
        n=N_DATA,
        trajectory_loglik_fn=lambda p, d: 0.7 * regression_loglik(p, d),
    )
    somewhere = {"theta": jnp.ones(D)}  # the leapfrogs really follow the wrong likelihood
    wrong, exact = target.trajectory_logdensity(somewhere, data), target.logdensity(somewhere, data)
    assert not np.isclose(float(wrong), float(exact))
    start = {"theta": 2.0 * jax.random.normal(jax.random.key(1), (N_CHAINS, D))}
    final, acc = chain_runner(engine, target, data)(start, mh=True)
    assert 0.3 < float(acc[-1]) < 1.0
    check_gaussian_moments(np.asarray(final["theta"], np.float64), mean, cov)


def test_bfloat16_loglik_is_close_to_float32():
    model = MLP(6, (16,), 3, key=jax.random.key(0))
    params, static = partition_params(model)
    x = jax.random.normal(jax.random.key(1), (50, 6))
    y = jnp.arange(50) % 3
    exact = categorical_loglik(params, static, x, y)
    low = with_precision(categorical_loglik, "bfloat16")(params, static, x, y)
    assert low.dtype == jnp.float32
    # bfloat16 keeps 8 bits of mantissa: relative error ~ 2^-8 per product, a few e-3 overall
    np.testing.assert_allclose(low, exact, rtol=0.05, atol=0.02)
    assert not np.array_equal(low, exact)
    same = with_precision(categorical_loglik, "tensorfloat32")(params, static, x, y)
    assert same.shape == exact.shape  # on CPUs TF32 is the float32 computation


def test_unknown_precision():
    with pytest.raises(ValueError, match="precision must be one of"):
        with_precision(categorical_loglik, "float16")
