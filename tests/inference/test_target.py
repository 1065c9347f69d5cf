"""The Target: the one place the log-posterior conventions are written."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.inference import CATEGORICAL, Target
from bnn_shift.inference.target import make_target
from bnn_shift.models import MLP
from bnn_shift.models.params import partition_params
from bnn_shift.priors import Gaussian


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=12).astype(np.int32)
    model = MLP(5, (4,), 3, key=jax.random.key(0))
    return model, x, y


def test_logdensity_is_the_tempered_sum(problem):
    model, x, y = problem
    params, static = partition_params(model)
    target = Target(CATEGORICAL, Gaussian(0.5), static, 2.0, len(x))
    per_example = CATEGORICAL.loglik(params, static, x, y)
    expected = (np.sum(per_example) + Gaussian(0.5).log_prob(params)) / 2.0
    np.testing.assert_allclose(target.logdensity(params, (x, y)), expected, rtol=1e-6)
    np.testing.assert_allclose(target.log_joint(params, (x, y)), 2 * expected, rtol=1e-6)


def test_masked_rows_count_for_nothing(problem):
    model, x, y = problem
    params, static = partition_params(model)
    target = Target(CATEGORICAL, Gaussian(0.5), static, 1.0, 8)
    mask = np.r_[np.ones(8), np.zeros(4)].astype(np.float32)
    np.testing.assert_allclose(
        target.logdensity(params, (x, y, mask)),
        target.logdensity(params, (x[:8], y[:8])),
        rtol=1e-6,
    )


def test_minibatch_estimate_is_unbiased(problem):
    """Averaged over the 4 disjoint batches of 3, (n / b) * batch sum equals the full sum."""
    model, x, y = problem
    params, static = partition_params(model)
    target = Target(CATEGORICAL, Gaussian(0.5), static, 1.0, len(x))
    estimates = [
        target.minibatch_log_joint(params, (x[i : i + 3], y[i : i + 3])) for i in (0, 3, 6, 9)
    ]
    np.testing.assert_allclose(np.mean(estimates), target.log_joint(params, (x, y)), rtol=1e-5)


def test_logdensity_diff_matches_the_difference_of_totals(problem):
    model, x, y = problem
    params, static = partition_params(model)
    target = Target(CATEGORICAL, Gaussian(0.5), static, 0.5, len(x))
    moved = jax.tree.map(lambda a: a + 0.01, params)
    diff = target.logdensity_diff(
        moved, params, target.loglik(moved, (x, y)), target.loglik(params, (x, y))
    )
    totals = target.logdensity(moved, (x, y)) - target.logdensity(params, (x, y))
    np.testing.assert_allclose(diff, totals, rtol=1e-3, atol=1e-4)


def test_make_target_checks_its_inputs(problem):
    model, x, y = problem
    with pytest.raises(ValueError, match="temperature"):
        make_target(model, Gaussian(0.5), x, y, temperature=0.0)
    with pytest.raises(ValueError, match="precision"):
        make_target(model, Gaussian(0.5), x, y, precision="float8")
    with pytest.raises(ValueError, match="labels must lie in"):
        make_target(model, Gaussian(0.5), x, y + 3)
    target, params, _, _ = make_target(model, Gaussian(0.5), x, y, temperature=0.5)
    assert target.n == len(x) and target.temperature == 0.5
    assert jnp.isfinite(target.logdensity(params, (x, y)))
