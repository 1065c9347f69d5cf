"""Tests for the Gaussian likelihood and the `likelihood=` argument of the engines, against the
exact answers of Bayesian linear regression (a conjugate model)."""

from __future__ import annotations

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from bnn_shift.inference import hmc, map_fit
from bnn_shift.inference.likelihood import (
    CATEGORICAL,
    SEQUENCE_CATEGORICAL,
    check_classification_data,
    check_inputs,
    check_regression_data,
    check_sequence_data,
    gaussian_likelihood,
    resolve_likelihood,
)
from bnn_shift.models.params import partition_params
from bnn_shift.priors import Gaussian

PRIOR_STD = 1.0  # s
NOISE_STD = 0.5  # sigma


class Affine(eqx.Module):
    """One example (d,) -> (k,) = W x + b."""

    linear: eqx.nn.Linear

    def __init__(self, d: int, k: int, key: jax.Array):
        self.linear = eqx.nn.Linear(d, k, key=key)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(x)


@pytest.fixture(scope="module")
def linear_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    w, b = np.array([1.0, -2.0, 0.5]), 0.3
    y = (x @ w + b + NOISE_STD * rng.normal(size=40)).astype(np.float32)
    return x, y


def exact_posterior(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior of (w, b) under w, b ~ N(0, s^2), y ~ N(x w + b, sigma^2): (mean, cov), float64."""
    a = np.hstack([x, np.ones((len(x), 1))]).astype(np.float64)  # (n, d + 1)
    precision = a.T @ a / NOISE_STD**2 + np.eye(a.shape[1]) / PRIOR_STD**2
    cov = np.linalg.inv(precision)
    return cov @ a.T @ y.astype(np.float64) / NOISE_STD**2, cov


def flat(params) -> np.ndarray:  # (..., d + 1): weights then bias
    return np.concatenate([params.linear.weight[..., 0, :], params.linear.bias], axis=-1)


def test_gaussian_loglik_matches_scipy():
    model = Affine(3, 2, jax.random.key(1))
    params, static = partition_params(model)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 3)).astype(np.float32)
    y = rng.normal(size=(7, 2)).astype(np.float32)
    mean = np.asarray(jax.vmap(model)(x), np.float64)
    for noise in (0.3, [0.3, 2.0]):
        got = gaussian_likelihood(noise).loglik(params, static, jnp.asarray(x), jnp.asarray(y))
        want = norm.logpdf(y, mean, np.asarray(noise)).sum(axis=1)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_learned_noise_reads_log_stds_from_the_second_half_of_the_outputs():
    model = Affine(3, 4, jax.random.key(2))  # 2 targets: 2 means, 2 log stds
    params, static = partition_params(model)
    x = np.random.default_rng(2).normal(size=(5, 3)).astype(np.float32)
    y = np.random.default_rng(3).normal(size=(5, 2)).astype(np.float32)
    out = np.asarray(jax.vmap(model)(x), np.float64)
    got = gaussian_likelihood(None).loglik(params, static, jnp.asarray(x), jnp.asarray(y))
    want = norm.logpdf(y, out[:, :2], np.exp(out[:, 2:])).sum(axis=1)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    means = gaussian_likelihood(None).predict(params, static, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(means), out[:, :2], rtol=1e-6)


def test_checks_name_the_problem():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="2 outputs per target"):
        gaussian_likelihood(None).check(Affine(3, 3, jax.random.key(0)), x, np.zeros(4))
    with pytest.raises(ValueError, match="targets have 2 columns but the model predicts 1"):
        check_regression_data(x, np.zeros((4, 2)), n_targets=1)
    with pytest.raises(ValueError, match="NaN"):
        check_regression_data(x, np.array([0.0, np.nan, 1.0, 2.0]), n_targets=1)
    with pytest.raises(ValueError, match="noise_std must be finite and > 0"):
        gaussian_likelihood(0.0)
    with pytest.raises(ValueError, match="2 noise_std values for a model with 1 outputs"):
        gaussian_likelihood([1.0, 2.0]).check(Affine(3, 1, jax.random.key(0)), x, np.zeros(4))


@pytest.mark.parametrize(
    ("check", "what"),
    [
        (lambda x: check_classification_data(x, np.zeros(2, int), 3), "inputs"),
        (lambda x: check_regression_data(x, np.zeros(2), 1), "inputs"),
        (lambda x: check_sequence_data(x, np.zeros((2, 1)), (1,)), "inputs"),
        (lambda x: check_sequence_data(x, np.zeros((2, 1)), (1,), n_classes=2), "inputs"),
        (lambda x: check_inputs("shifted", x, (3,)), "eval set 'shifted'"),
        (lambda y: check_regression_data(np.zeros((2, 3)), y[:, 1], 1), "targets"),
        (lambda y: check_sequence_data(np.zeros((2, 3)), y, (3,)), "targets"),
    ],
)
def test_values_beyond_float32_and_complex_values_are_refused(check, what):
    """float64 values above float32's range become inf in the cast: checked after it."""
    huge = np.array([[0.0, 1e39, 0.0], [0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match=rf"{what}: found NaN or inf \(values beyond float32"):
        check(huge)
    with pytest.raises(ValueError, match=f"{what}: complex values"):
        check(huge.astype(complex) * 0 + 1j)
    with pytest.raises(ValueError, match=f"{what}: found NaN or inf; clean"):
        check(np.where(huge > 1, np.inf, huge))


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array(["a", "b", "a", "c"]), "labels must be integer class ids 0..2, got dtype <U1"),
        (np.array([0, 1, None, 2], dtype=object), "labels must be integer class ids"),
        (np.array([0, 1, 2, 1j]), "labels must be integer class ids"),
        (np.array([0.0, np.nan, 1.0, 2.0]), "labels must be integers 0..2"),
    ],
)
def test_labels_that_are_not_class_ids_are_named(labels, match):
    with pytest.raises(ValueError, match=match):
        check_classification_data(np.zeros((4, 3)), labels, 3)


class Scalar(eqx.Module):
    """One example (d,) -> a scalar, or (2, k) logits: not what a categorical model returns."""

    linear: eqx.nn.Linear
    shape: tuple[int, ...] = eqx.field(static=True)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(x).reshape(self.shape)


@pytest.mark.parametrize("shape", [(), (2, 2)])
def test_a_model_whose_outputs_are_not_a_vector_is_named(shape):
    model = Scalar(eqx.nn.Linear(3, max(1, int(np.prod(shape))), key=jax.random.key(0)), shape)
    x, y = np.zeros((4, 3), np.float32), np.zeros(4, int)
    with pytest.raises(ValueError, match=re.escape(f"the model returns shape {shape} for one")):
        CATEGORICAL.check(model, x, y)
    with pytest.raises(ValueError, match=r"the model returns shape"):
        map_fit(model, Gaussian(1.0), x, y, n_epochs=1, progress=False)
    if shape:  # per-position logits are what the sequence likelihood takes
        assert SEQUENCE_CATEGORICAL.check(model, x, np.zeros((4, 2)))[1].dtype == np.int32


def test_resolve_likelihood():
    assert resolve_likelihood("categorical") is CATEGORICAL
    assert resolve_likelihood("gaussian").name == "gaussian(noise_std=1.)"
    lik = gaussian_likelihood(0.1)
    assert resolve_likelihood(lik) is lik
    with pytest.raises(ValueError, match='likelihood must be "categorical", "gaussian"'):
        resolve_likelihood("poisson")


def test_map_fit_with_gaussian_likelihood_is_ridge_regression(linear_data):
    x, y = linear_data
    post = map_fit(
        Affine(3, 1, jax.random.key(0)),
        Gaussian(PRIOR_STD),
        x,
        y,
        n_epochs=1500,
        learning_rate=0.05,
        progress=False,
        likelihood=gaussian_likelihood(NOISE_STD),
    )
    mean, cov = exact_posterior(x, y)  # the Gaussian posterior's mode is its mean
    # Adam's cosine-decayed steps end far inside the posterior's width (sqrt of cov's diagonal)
    np.testing.assert_allclose(flat(post.draws)[0], mean, atol=0.01 * np.sqrt(cov.diagonal()).min())
    assert post.attrs["likelihood"] == "gaussian(noise_std=0.5)"
    with pytest.raises(ValueError, match="class probabilities need a categorical likelihood"):
        post.predict_proba(x)


def test_hmc_with_gaussian_likelihood_samples_the_conjugate_posterior(linear_data):
    x, y = linear_data
    mean, cov = exact_posterior(x, y)
    std = np.sqrt(cov.diagonal())
    n_iter, n_burnin = 200, 20
    post = hmc(
        Affine(3, 1, jax.random.key(0)),
        Gaussian(PRIOR_STD),
        x,
        y,
        step_size="auto",
        n_iterations=n_iter,
        n_burnin=n_burnin,
        # a sixth of the stiffest direction's period: far from the half period at which HMC
        # on a Gaussian only mirrors the chain around the mean (and never forgets its start)
        trajectory_length=std.min(),
        eval_sets={"grid": x[:5]},
        progress=False,
        likelihood=gaussian_likelihood(NOISE_STD),
    )
    draws = flat(post.draws)  # (n_draws, 4)
    assert len(draws) > 0.6 * (n_iter - n_burnin)
    # these trajectories give lag-1 autocorrelations of 0.3-0.55 (measured over seeds), so for
    # an AR(1) chain ESS = n (1 - rho) / (1 + rho) > n / 4: the mean's standard error is below
    # std * sqrt(4 / n), and 4 of them is a 1e-4 false alarm
    np.testing.assert_array_less(np.abs(draws.mean(0) - mean), 4 * std * np.sqrt(4 / len(draws)))
    np.testing.assert_allclose(draws.std(0), std, rtol=0.35)
    # eval-set predictions are model-averaged means: x w + b under the draws' average
    expected = x[:5] @ draws.mean(0)[:3] + draws.mean(0)[3]
    np.testing.assert_allclose(post.predictions["grid"][:, 0], expected, atol=1e-4)
    with pytest.raises(ValueError, match="has labels, which only a categorical model uses"):
        hmc(
            Affine(3, 1, jax.random.key(0)),
            Gaussian(PRIOR_STD),
            x,
            y,
            step_size=0.01,
            n_iterations=1,
            n_burnin=0,
            eval_sets={"test": (x, y)},
            progress=False,
            likelihood=gaussian_likelihood(NOISE_STD),
        )
