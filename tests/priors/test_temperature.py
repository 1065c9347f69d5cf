"""Tests for bnn_shift.priors.Temperature: p(theta)^(1/T)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.priors import EmpCov, Gaussian, Prior, Temperature, by_path


class Laplace(Prior):
    """A non-Gaussian prior (only log_prob is needed here)."""

    def log_prob(self, params):
        return -sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(params))

    def log_prob_diff(self, new, old):
        return self.log_prob(new) - self.log_prob(old)

    @property
    def scale(self) -> float:
        return math.sqrt(2.0)


PARAMS = {"w": jnp.asarray([[0.3, -1.2], [2.0, 0.1]]), "b": jnp.asarray([0.5])}


@pytest.mark.parametrize("temperature", [0.01, 0.5, 1.0, 3.0])
def test_log_prob_and_diff_are_scaled_by_one_over_t(temperature):
    inner = Gaussian(0.7)
    prior = Temperature(inner, temperature)
    assert float(prior.log_prob(PARAMS)) == pytest.approx(
        float(inner.log_prob(PARAMS)) / temperature, rel=1e-6
    )
    other = jax.tree.map(lambda x: -0.5 * x, PARAMS)
    assert float(prior.log_prob_diff(other, PARAMS)) == pytest.approx(
        float(inner.log_prob_diff(other, PARAMS)) / temperature, rel=1e-6
    )


@pytest.mark.parametrize("temperature", [0.01, 4.0])
def test_tempered_gaussian_samples_have_variance_t_scale2(temperature):
    scale, n = 0.3, 40_000
    draw = Temperature(Gaussian(scale), temperature).sample(
        jax.random.key(0), {"w": jnp.zeros(n, jnp.float32)}
    )
    x = np.asarray(draw["w"], np.float64)
    assert draw["w"].dtype == jnp.float32
    target = temperature * scale**2
    # the sample variance of n iid normals has standard error var*sqrt(2/(n-1)); allow 5
    assert x.var(ddof=1) == pytest.approx(target, rel=5 * math.sqrt(2 / (n - 1)))


def test_tempered_empcov_and_nested_compositions_sample():
    rng = np.random.default_rng(0)
    emp = EmpCov.from_data(rng.normal(size=(30, 3)), scale=0.2)
    prior = Temperature(by_path({"w": emp, "*": Temperature(Gaussian(0.1), 2.0)}), 0.5)
    draw = prior.sample(jax.random.key(0), {"w": jnp.zeros((2, 3)), "b": jnp.zeros(4)})
    assert draw["w"].shape == (2, 3) and draw["b"].shape == (4,)
    assert prior.trajectory_scale == pytest.approx(0.2 * math.sqrt(0.5), rel=1e-6)


def test_sampling_a_tempered_non_gaussian_is_not_implemented():
    with pytest.raises(NotImplementedError, match="Laplace"):
        Temperature(Laplace(), 0.5).sample(jax.random.key(0), PARAMS)
    with pytest.raises(NotImplementedError):
        Temperature(by_path({"w": Laplace(), "*": Gaussian(1.0)}), 0.5).sample(
            jax.random.key(0), PARAMS
        )


def test_tempered_non_gaussian_log_prob_is_scaled():
    prior = Temperature(Laplace(), 0.25)
    assert float(prior.log_prob(PARAMS)) == pytest.approx(-4 * (0.3 + 1.2 + 2.0 + 0.1 + 0.5))


@pytest.mark.parametrize("temperature", [0.01, 1.0, 9.0])
def test_trajectory_scale_is_inner_scale_times_sqrt_t(temperature):
    assert Temperature(Gaussian(0.1), temperature).trajectory_scale == pytest.approx(
        0.1 * math.sqrt(temperature)
    )


def test_split_is_the_inner_prior_over_the_whole_tree_at_weight_one_over_t():
    inner = by_path({"w": Gaussian(1.0), "*": Gaussian(0.1)})
    (part,) = Temperature(inner, 0.25).split(PARAMS)
    assert (part.prior, part.leaves, part.weight) == (inner, (0, 1), 4.0)
    assert part.of(PARAMS) is PARAMS  # by_path inside still selects by path
    assert Temperature(inner, 0.25).children() == (inner,)


def test_preconditioner_is_the_inner_ones():
    rng = np.random.default_rng(0)
    emp = EmpCov.from_data(rng.normal(size=(30, 3)), scale=0.2)
    like = [jnp.zeros((2, 3))]
    (factor,) = Temperature(emp, 0.1).preconditioner(like)
    np.testing.assert_array_equal(factor.sqrt_mass, emp.preconditioner(like)[0].sqrt_mass)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature_raises(temperature):
    with pytest.raises(ValueError, match="temperature"):
        Temperature(Gaussian(1.0), temperature)


def test_describe():
    assert Temperature(Gaussian(0.1), 0.01).describe().startswith("Temperature(T=0.01) of Gaussian")
