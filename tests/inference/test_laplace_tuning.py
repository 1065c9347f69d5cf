"""Prior scales by the Laplace evidence (`tune_prior_scale`) against exact answers.

Bayesian linear regression with known noise: the full Laplace evidence at the MAP is the exact
evidence log N(y; 0, noise^2 I + X C X^T), so MacKay's iteration (refit the MAP under the tuned
prior, tune again) must stop at the closed-form evidence maximiser, for an isotropic Gaussian, a
dense EmpCov covariance and one scale per layer. Elsewhere the cheap log determinants (fixed
GGN, eigenvalues computed once) must equal the rescaled approximation's own evidence.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import numpy as np
import pytest
import scipy.optimize

from bnn_shift.inference.laplace import (
    approx_from_posterior,
    fit_laplace,
    laplace,
    log_marginal_likelihood,
    prior_groups,
    tune_prior_scale,
)
from bnn_shift.models.mlp import MLP
from bnn_shift.priors import EmpCov, Gaussian, by_path
from bnn_shift.priors.empcov import input_covariance

from .exact_targets import gaussian_posterior
from .test_exact_posteriors import (
    EMPCOV_EPS,
    LIKELIHOOD,
    N_DATA,
    N_FEATURES,
    NOISE_STD,
    PRIOR_STD,
    regression_data,
)
from .test_laplace import evidence, exact_model

TOL = 1e-5  # relative, on a tuned sd: the GGN is summed in float32 (n eps32 cond(P) ~ 1e-5)


def closed_form_maximiser(log_evidence, n_scales: int) -> np.ndarray:
    """argmax over sds s (n_scales,) of log_evidence(s), by Powell's method on log s."""
    result = scipy.optimize.minimize(
        lambda log_s: -log_evidence(np.exp(log_s)),
        np.zeros(n_scales),
        method="Powell",
        options={"xtol": 1e-10, "ftol": 1e-14},
    )
    return np.exp(result.x)


def mackay(problem, groups, start: list[float]) -> np.ndarray:
    """MacKay's iteration from the factors `start`: MAP under the prior scaled by the factors
    (closed form), fixed-mode tuning there, factors times the tuned ones, until they settle."""
    factors = np.asarray(start, np.float64)
    for _ in range(100):
        model_at, prior, (x, y), features, precision = problem(factors)
        mean, _ = gaussian_posterior(features, y, NOISE_STD, precision)
        approx = fit_laplace(model_at(mean), prior, x, y, likelihood=LIKELIHOOD, fit_map=False)
        fit = tune_prior_scale(approx, groups)
        assert fit.log_marginal_likelihood >= fit.history[0] - 1e-9
        factors = factors * fit.factors
        if np.abs(np.log(fit.factors)).max() < 1e-7:  # linear convergence, rate <= 0.7 here
            return factors
    raise AssertionError(f"MacKay's iteration did not settle: {factors}")


def gaussian_problem(factors):
    x, y = regression_data()
    s = PRIOR_STD * factors[0]
    return exact_model, Gaussian(s), (x, y), x, np.eye(N_FEATURES) / s**2


def test_tuned_gaussian_scale_is_the_evidence_maximiser():
    x, y = regression_data()
    best = closed_form_maximiser(lambda s: evidence(x, y, s[0] ** 2 * np.eye(N_FEATURES)), 1)
    found = PRIOR_STD * mackay(gaussian_problem, None, [3.0])
    np.testing.assert_allclose(found, best, rtol=TOL)


def empcov_problem(factors):
    """EmpCov on the weights (covariance alpha Sigma + eps I, dense) and Gaussian(PRIOR_STD) on
    the intercept, every sd times factors[0]."""
    x, y = regression_data()
    base = EmpCov.from_data(x, scale=PRIOR_STD, eps=EMPCOV_EPS)
    f2 = factors[0] ** 2
    empcov = EmpCov(input_covariance(x), alpha=base.alpha * f2, eps=EMPCOV_EPS * f2)
    prior = by_path({"weight": empcov, "bias": Gaussian(PRIOR_STD * factors[0])})
    return (
        lambda mean: exact_model(mean, use_bias=True),
        prior,
        (x, y),
        np.column_stack([x, np.ones(N_DATA)]),
        np.linalg.inv(empcov_cov(empcov, PRIOR_STD * factors[0])),
    )


def empcov_cov(empcov: EmpCov, bias_std: float) -> np.ndarray:
    """The prior covariance of (weight, intercept): EmpCov's V diag(prior_var) V^T, bias_std^2."""
    vecs = np.asarray(empcov.eigvecs, np.float64)
    cov = np.zeros((N_FEATURES + 1,) * 2)
    cov[:N_FEATURES, :N_FEATURES] = (vecs * np.asarray(empcov.prior_var, np.float64)) @ vecs.T
    cov[N_FEATURES, N_FEATURES] = bias_std**2
    return cov


def test_tuned_empcov_scale_is_the_evidence_maximiser():
    """A dense, non-isotropic prior covariance (EmpCov's) scaled as a whole."""
    _, _, (_, y), features, precision = empcov_problem(np.ones(1))
    cov = np.linalg.inv(precision)
    best = closed_form_maximiser(lambda f: evidence(features, y, f[0] ** 2 * cov), 1)
    np.testing.assert_allclose(mackay(empcov_problem, None, [1.0]), best, rtol=TOL)
    assert abs(math.log(best[0])) > 0.4  # far from where the iteration starts


class TwoGroups(eqx.Module):
    """y = a(x[:2]) + b(x[2:]): two layers on disjoint features."""

    a: eqx.nn.Linear
    b: eqx.nn.Linear

    def __call__(self, x):
        return self.a(x[:2]) + self.b(x[2:])


def two_group_data() -> tuple[np.ndarray, np.ndarray]:
    """x (100, 5) standard normal; y = x w + N(0, 0.5^2), w = (2, -1.5 | 0.15, -0.2, 0.1):
    large weights on features 0-1 (layer a), small ones on 2-4 (layer b)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(100, 5))
    y = x @ np.array([2.0, -1.5, 0.15, -0.2, 0.1]) + NOISE_STD * rng.normal(size=100)
    return x.astype(np.float32), y.astype(np.float32)


def two_group_problem(factors):
    """Layer a (features 0-1) under Gaussian(factors[0]), layer b (2-4) under
    Gaussian(factors[1])."""
    x, y = two_group_data()
    s = np.asarray(factors, np.float64)

    def model_at(mean):
        keys = jax.random.split(jax.random.key(0))
        model = TwoGroups(
            eqx.nn.Linear(2, 1, use_bias=False, key=keys[0]),
            eqx.nn.Linear(3, 1, use_bias=False, key=keys[1]),
        )
        weights = (mean[None, :2].astype(np.float32), mean[None, 2:].astype(np.float32))
        return eqx.tree_at(lambda m: (m.a.weight, m.b.weight), model, weights)

    prior = by_path({"a.*": Gaussian(s[0]), "b.*": Gaussian(s[1])})
    return model_at, prior, (x, y), x, np.diag(np.repeat(s**-2, [2, 3]))


def test_layer_wise_scales_are_the_evidence_maximiser():
    """One scale per layer ("layer" groups: a, b) recovers each layer's evidence-optimal sd,
    an order of magnitude apart."""
    x, y = two_group_data()
    best = closed_form_maximiser(lambda s: evidence(x, y, np.diag(np.repeat(s**2, [2, 3]))), 2)
    assert best[0] / best[1] > 5
    np.testing.assert_allclose(mackay(two_group_problem, "layer", [1.0, 1.0]), best, rtol=TOL)
    model_at, prior, _, _, _ = two_group_problem([1.0, 1.0])
    approx = fit_laplace(model_at(np.zeros(5)), prior, x, y, likelihood=LIKELIHOOD, fit_map=False)
    assert prior_groups(approx, "layer")[0] == ("a", "b")
    names, index = prior_groups(approx, ["b.*", "*"])
    assert names == ("b.*", "*") and index.tolist() == [1, 0]


def classifier_problem() -> tuple[MLP, object, np.ndarray, np.ndarray]:
    """An MLP 3-6-3 classifier with EmpCov rows on its first layer's weight (a dense 3 x 3
    precision) and Gaussian priors elsewhere."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(60, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0.3], [0, 0, 0.2]])).astype(
        np.float32
    )
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 0.1)
    prior = by_path(
        {"layers.0.weight": EmpCov.from_data(x, scale=1.0, eps=1e-2), "*": Gaussian(0.7)}
    )
    return MLP(3, (6,), 3, key=jax.random.key(0)), prior, x, y


@pytest.mark.parametrize(
    ("hessian", "groups", "temperature"),
    [
        ("full", None, 1.0),
        ("full", "layer", 0.5),
        ("full", ["*.weight", "*.bias"], 1.0),
        ("diag", ["*.weight", "*.bias"], 1.0),
        ("diag", "layer", 0.5),
        ("kron", "layer", 1.0),
        ("kron", None, 0.5),
    ],
)
def test_cheap_log_dets_are_the_rescaled_approximations_evidence(hessian, groups, temperature):
    """The tuned evidence (GGN fixed, log det by whitened eigenvalues, closed form or Cholesky)
    is the evidence of the approximation rebuilt with the tuned prior (kron: eigh redone with
    the scaled EmpCov precision), it beats f = 1, and tuning that one again leaves it."""
    model, prior, x, y = classifier_problem()
    approx = fit_laplace(model, prior, x, y, hessian=hessian, temperature=temperature,
                         fit_map=False)  # fmt: skip
    fit = tune_prior_scale(approx, groups)
    # at f = 1 the approximation's own evidence, up to the full GGN's float32 rounding (its
    # negative eigenvalues, ~1e-6 here, are set to 0 for tuning)
    assert fit.history[0] == pytest.approx(log_marginal_likelihood(approx), rel=1e-8)
    assert fit.log_marginal_likelihood == pytest.approx(
        log_marginal_likelihood(fit.approx), abs=1e-7
    )
    assert fit.log_marginal_likelihood > fit.history[0] + 1e-3
    assert np.abs(np.log(fit.factors)).max() > 0.05
    assert fit.approx.settings["prior_factors"] == dict(zip(fit.groups, fit.factors.tolist()))
    again = tune_prior_scale(fit.approx, groups)
    np.testing.assert_allclose(again.factors, 1.0, atol=1e-5)


def test_tuning_bad_groups_give_clear_errors():
    model, prior, x, y = classifier_problem()
    kron = fit_laplace(model, prior, x, y, hessian="kron", fit_map=False)
    with pytest.raises(ValueError, match="takes one prior scale"):
        tune_prior_scale(kron, ["*.weight", "*.bias"])
    with pytest.raises(ValueError, match=r"'layers\.0\.bias' is in none of the groups"):
        tune_prior_scale(kron, ["*.weight"])
    with pytest.raises(ValueError, match=r"groups \['conv\*'\] pick no subset leaf"):
        tune_prior_scale(kron, ["conv*", "*"])
    saved = laplace(model, prior, x, y, hessian="kron", fit_map=False, n_samples=2)
    with pytest.raises(ValueError, match="no evidence"):
        tune_prior_scale(approx_from_posterior(saved))
