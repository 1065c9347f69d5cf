"""Laplace approximation against exact answers.

Bayesian linear regression with known noise (the problem of test_exact_posteriors.py) is
conjugate and linear: its GGN is its Hessian, so full Laplace is the exact posterior and its
evidence the exact one. Tolerances: the GGN is summed in float32 (n products, each good to
float32 epsilon), so precisions carry a relative error of about n * eps32, which inverting
multiplies by at most cond(P); everything after that is float64.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import numpy as np
import pytest

from bnn_shift.inference import CATEGORICAL, gaussian_likelihood
from bnn_shift.inference.laplace import (
    FULL_LIMIT,
    FullBlock,
    KronBlock,
    KronLayer,
    fit_laplace,
    kron_factors,
    laplace,
    laplace_predict,
    log_marginal_likelihood,
    tune_prior_scale,
)
from bnn_shift.models.conv import conv2d
from bnn_shift.models.mlp import MLP
from bnn_shift.models.params import partition_params
from bnn_shift.priors import EmpCov, Gaussian, StudentT

from .exact_targets import flat_draws, gaussian_posterior
from .test_exact_posteriors import (
    LIKELIHOOD,
    N_DATA,
    N_FEATURES,
    NOISE_STD,
    PRIOR_STD,
    empcov_problem,
    regression_data,
)

EPS32 = float(np.finfo(np.float32).eps)


def exact_model(mean: np.ndarray, *, use_bias: bool = False) -> eqx.nn.Linear:
    """eqx.nn.Linear(5, 1) at the given flat (weight, then bias) parameters."""
    model = eqx.nn.Linear(N_FEATURES, 1, use_bias=use_bias, key=jax.random.key(0))
    model = eqx.tree_at(lambda m: m.weight, model, np.asarray(mean[None, :N_FEATURES], np.float32))
    if use_bias:
        model = eqx.tree_at(lambda m: m.bias, model, np.asarray(mean[N_FEATURES:], np.float32))
    return model


def precision_tolerance(cov: np.ndarray) -> float:
    """Relative error of a covariance from a float32-summed precision: n eps32 cond(P)."""
    return 4 * N_DATA * EPS32 * np.linalg.cond(cov)


def evidence(x: np.ndarray, y: np.ndarray, prior_cov: np.ndarray) -> float:
    """log N(y; 0, noise^2 I + X C X^T), float64."""
    x = np.asarray(x, np.float64)
    marginal = NOISE_STD**2 * np.eye(len(x)) + x @ prior_cov @ x.T
    log_det = np.linalg.slogdet(2 * math.pi * marginal)[1]
    return float(-0.5 * (log_det + y @ np.linalg.solve(marginal, np.asarray(y, np.float64))))


def laplace_cov(approx) -> np.ndarray:
    """T P^-1 of a one-block full approximation."""
    ((_, block),) = approx.curvature.blocks
    assert isinstance(block, FullBlock)
    return approx.temperature * np.linalg.inv(block.ggn + block.prior)


@pytest.mark.parametrize("temperature", [1.0, 0.25])
def test_full_laplace_is_the_exact_regression_posterior(temperature):
    x, y = regression_data()
    mean, cov = gaussian_posterior(x, y, NOISE_STD, np.eye(N_FEATURES) / PRIOR_STD**2, temperature)
    approx = fit_laplace(
        exact_model(mean),
        Gaussian(PRIOR_STD),
        x,
        y,
        likelihood=LIKELIHOOD,
        temperature=temperature,
        fit_map=False,
    )
    tol = precision_tolerance(cov)
    np.testing.assert_allclose(laplace_cov(approx), cov, rtol=tol, atol=tol * np.abs(cov).max())
    post = laplace(
        exact_model(mean),
        Gaussian(PRIOR_STD),
        x,
        y,
        likelihood=LIKELIHOOD,
        temperature=temperature,
        fit_map=False,
        n_samples=4,
    )
    np.testing.assert_allclose(np.asarray(post.variational["mean"].weight)[0], mean, rtol=EPS32)
    std = np.asarray(post.variational["std"].weight)[0]
    np.testing.assert_allclose(std, np.sqrt(np.diag(cov)), rtol=tol)
    assert post.kind == "variational" and post.n_draws == 4
    assert post.attrs["method"] == "laplace" and post.attrs["hessian"] == "full"
    if temperature == 1.0:
        exact = evidence(x, y, PRIOR_STD**2 * np.eye(N_FEATURES))
        # log joint: n float32 log-likelihood terms of O(1)
        assert post.attrs["log_marginal_likelihood"] == pytest.approx(exact, abs=N_DATA * 1e-6)


def test_laplace_fits_the_map_first():
    """With fit_map the mean is map_fit's: the exact mean within 1e-4 posterior sds (see
    test_map_fit_finds_the_exact_posterior_mean), the covariance exact (a linear model's GGN
    does not depend on where it is taken)."""
    x, y = regression_data()
    mean, cov = gaussian_posterior(x, y, NOISE_STD, np.eye(N_FEATURES) / PRIOR_STD**2)
    approx = fit_laplace(
        exact_model(np.zeros(N_FEATURES)),
        Gaussian(PRIOR_STD),
        x,
        y,
        likelihood=LIKELIHOOD,
        map_settings={"n_epochs": 2000, "learning_rate": 0.05},
    )
    error = np.asarray(approx.mean.weight, np.float64)[0] - mean
    assert math.sqrt(error @ np.linalg.solve(cov, error)) < 1e-4
    tol = precision_tolerance(cov)
    np.testing.assert_allclose(laplace_cov(approx), cov, rtol=tol, atol=tol * np.abs(cov).max())


def test_diag_laplace_inverts_the_diagonal_of_the_exact_precision():
    x, y = regression_data()
    mean, cov = gaussian_posterior(x, y, NOISE_STD, np.eye(N_FEATURES) / PRIOR_STD**2)
    post = laplace(
        exact_model(mean),
        Gaussian(PRIOR_STD),
        x,
        y,
        hessian="diag",
        likelihood=LIKELIHOOD,
        fit_map=False,
    )
    precision = np.linalg.inv(cov)
    std = np.asarray(post.variational["std"].weight)[0]
    np.testing.assert_allclose(std, 1 / np.sqrt(np.diag(precision)), rtol=N_DATA * EPS32)


def test_empcov_prior_enters_exactly_with_full_and_kron():
    """EmpCov on the weights, Gaussian on the bias: full is the exact posterior and evidence;
    kron (one layer, constant output precision: KFAC is exact) equals it too."""
    x, y = regression_data()
    prior, mean, cov = empcov_problem()
    tol = precision_tolerance(cov)
    for hessian in ("full", "kron"):
        approx = fit_laplace(
            exact_model(mean, use_bias=True),
            prior,
            x,
            y,
            hessian=hessian,
            likelihood=LIKELIHOOD,
            fit_map=False,
        )
        np.testing.assert_allclose(
            approx.temperature * approx.curvature.variances(), np.diag(cov), rtol=tol
        )
        empcov = EmpCov.from_data(x, scale=PRIOR_STD, eps=1e-3)
        vecs = np.asarray(empcov.eigvecs, np.float64)
        prior_cov = np.zeros((N_FEATURES + 1,) * 2)
        prior_cov[:N_FEATURES, :N_FEATURES] = (vecs * np.asarray(empcov.prior_var)) @ vecs.T
        prior_cov[N_FEATURES, N_FEATURES] = PRIOR_STD**2
        exact = evidence(np.column_stack([x, np.ones(N_DATA)]), y, prior_cov)
        assert log_marginal_likelihood(approx) == pytest.approx(exact, abs=N_DATA * 1e-5)


def test_kron_factors_are_the_hand_computed_ones():
    """Softmax regression (one Linear layer, 3 classes): G = sum_i diag(p_i) - p_i p_i^T,
    A = mean_i [x_i, 1][x_i, 1]^T."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=30)
    model = eqx.nn.Linear(4, 3, key=jax.random.key(2))
    params, static = partition_params(model)
    ((g, a),) = kron_factors(params, static, CATEGORICAL, x, y, (KronLayer((), True, True),))
    logits = x @ np.asarray(model.weight).T + np.asarray(model.bias)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g_hand = np.sum([np.diag(q) - np.outer(q, q) for q in p], axis=0)
    aug = np.column_stack([x, np.ones(len(x))]).astype(np.float64)
    np.testing.assert_allclose(g, g_hand, rtol=1e-5, atol=len(x) * EPS32)
    np.testing.assert_allclose(a, aug.T @ aug / len(x), rtol=1e-5, atol=8 * EPS32)


class PooledConv(eqx.Module):
    """One conv layer whose output channels, averaged over positions, are the logits."""

    conv: eqx.nn.Conv2d

    def __call__(self, x):
        return conv2d(self.conv, x).mean(axis=(1, 2))  # (C, H, W) -> (O,)


def test_conv_kron_factors_are_the_hand_computed_kfc_ones():
    """KFC for a conv (Grosse & Martens 2016): G sums J_t^T Lambda J_t over examples and
    positions (here J_t = I / T from the mean pool, so G = sum_i Lambda_i / T), A averages
    [patch_t, 1][patch_t, 1]^T over examples and positions, patches in the kernel's row order."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 2, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=20)
    model = PooledConv(eqx.nn.Conv2d(2, 3, 3, stride=1, padding=1, key=jax.random.key(3)))
    params, static = partition_params(model)
    ((g, a),) = kron_factors(
        params,
        static,
        CATEGORICAL,
        x,
        y,
        (KronLayer((jax.tree_util.GetAttrKey("conv"),), True, True),),
    )
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    patches = np.stack(
        [
            padded[:, :, i : i + 3, j : j + 3].reshape(len(x), -1)
            for i in range(4)
            for j in range(4)
        ],
        axis=1,
    )  # (n, T = 16, C * 3 * 3) in (C, kh, kw) order
    aug = np.concatenate([patches, np.ones((len(x), 16, 1))], axis=2).reshape(-1, 19)
    np.testing.assert_allclose(a, aug.T @ aug / (16 * len(x)), rtol=1e-5, atol=8 * EPS32)
    w = np.asarray(model.conv.weight, np.float64).reshape(3, -1)
    logits = patches @ w.T + np.asarray(model.conv.bias, np.float64).reshape(1, 1, 3)
    logits = logits.mean(axis=1)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g_hand = np.sum([np.diag(q) - np.outer(q, q) for q in p], axis=0) / 16
    np.testing.assert_allclose(g, g_hand, rtol=1e-4, atol=len(x) * EPS32)


def test_kron_covers_conv_layers_in_a_fit():
    """A LeNet-shaped fit with hessian="kron": every conv and dense layer gets a KFAC block."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=12)
    model = PooledConv(eqx.nn.Conv2d(1, 3, 3, key=jax.random.key(0)))
    approx = fit_laplace(model, Gaussian(1.0), x, y, hessian="kron", fit_map=False)
    assert [type(block).__name__ for _, block in approx.curvature.blocks] == ["KronBlock"]
    assert np.all(approx.curvature.variances() > 0)


def test_last_layer_subset_leaves_the_rest_at_the_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    model = MLP(3, (6,), 2, key=jax.random.key(0))
    post = laplace(model, Gaussian(1.0), x, y, subset="last_layer", fit_map=False, n_samples=8)
    assert post.attrs["subset_paths"] == ["layers.1.weight", "layers.1.bias"]
    for name in ("weight", "bias"):
        first = np.asarray(getattr(post.draws.layers[0], name))
        np.testing.assert_array_equal(
            first, np.broadcast_to(getattr(model.layers[0], name), first.shape)
        )
        assert np.all(np.asarray(getattr(post.variational["std"].layers[0], name)) == 0)
        assert np.all(np.asarray(getattr(post.variational["std"].layers[1], name)) > 0)
    assert np.std(np.asarray(post.draws.layers[1].weight), axis=0).min() > 0


def test_kron_equals_full_on_a_one_layer_regression():
    x, y = regression_data()
    mean, cov = gaussian_posterior(x, y, NOISE_STD, np.eye(N_FEATURES) / PRIOR_STD**2)
    kron = fit_laplace(
        exact_model(mean),
        Gaussian(PRIOR_STD),
        x,
        y,
        hessian="kron",
        likelihood=LIKELIHOOD,
        fit_map=False,
    )
    assert isinstance(kron.curvature.blocks[0][1], KronBlock)
    tol = precision_tolerance(cov)
    np.testing.assert_allclose(kron.curvature.variances(), np.diag(cov), rtol=tol)
    draws = flat_draws(
        laplace(
            exact_model(mean),
            Gaussian(PRIOR_STD),
            x,
            y,
            hessian="kron",
            likelihood=LIKELIHOOD,
            fit_map=False,
            n_samples=4000,
        ).draws
    )
    # 4000 draws: a sample covariance entry is within ~5 / sqrt(4000) of its sd product
    sd = np.sqrt(np.diag(cov))
    assert np.abs(np.cov(draws, rowvar=False) - cov).max() < 5 / math.sqrt(4000) * sd.max() ** 2


def test_glm_and_probit_predictives():
    x, y = regression_data()
    mean, cov = gaussian_posterior(x, y, NOISE_STD, np.eye(N_FEATURES) / PRIOR_STD**2)
    approx = fit_laplace(
        exact_model(mean), Gaussian(PRIOR_STD), x, y, likelihood=LIKELIHOOD, fit_map=False
    )
    pred = laplace_predict(approx, x[:7], method="glm")
    x64 = x[:7].astype(np.float64)
    np.testing.assert_allclose(pred.f_mean[:, 0], x64 @ mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        pred.f_var[:, 0], np.einsum("mi,ij,mj->m", x64, cov, x64), rtol=precision_tolerance(cov)
    )
    mc = laplace_predict(approx, x[:7], method="mc", n_samples=4000)
    np.testing.assert_allclose(mc.f_mean, pred.f_mean, atol=5 * np.sqrt(pred.f_var / 4000).max())
    with pytest.raises(ValueError, match="classifiers"):
        laplace_predict(approx, x[:7], method="probit")
    rng = np.random.default_rng(1)
    xc = rng.normal(size=(30, 4)).astype(np.float32)
    yc = rng.integers(0, 3, size=30)
    post = laplace(eqx.nn.Linear(4, 3, key=jax.random.key(2)), Gaussian(1.0), xc, yc, fit_map=False)
    probit = laplace_predict(post, xc, method="probit")
    scaled = probit.f_mean / np.sqrt(1 + math.pi / 8 * probit.f_var)
    np.testing.assert_allclose(probit.predictive, np.asarray(jax.nn.softmax(scaled, -1)), rtol=1e-6)
    glm = laplace_predict(post, xc, method="glm", n_samples=2000)
    np.testing.assert_allclose(glm.predictive.sum(1), 1.0, rtol=16 * EPS32)  # float32 softmax
    assert np.abs(glm.predictive - probit.predictive).max() < 0.05


def test_tune_prior_scale_finds_the_fixed_mode_evidence_optimum():
    x, y = regression_data()
    mean, _ = gaussian_posterior(x, y, NOISE_STD, np.eye(N_FEATURES) / PRIOR_STD**2)
    approx = fit_laplace(
        exact_model(mean), Gaussian(PRIOR_STD), x, y, likelihood=LIKELIHOOD, fit_map=False
    )
    fit = tune_prior_scale(approx)
    assert fit.history[0] == pytest.approx(log_marginal_likelihood(approx), abs=1e-9)
    ((_, block),) = approx.curvature.blocks
    h = np.linalg.eigvalsh(block.ggn)
    s2 = (PRIOR_STD * fit.factors[0]) ** 2
    assert N_FEATURES * s2 == pytest.approx(mean @ mean + np.sum(1 / (h + 1 / s2)), rel=1e-4)
    assert fit.log_marginal_likelihood >= fit.history.max() - 1e-9


def test_bad_inputs_give_clear_errors():
    x, y = regression_data()
    model, prior = exact_model(np.zeros(N_FEATURES)), Gaussian(PRIOR_STD)
    settings = {"likelihood": LIKELIHOOD, "fit_map": False}
    with pytest.raises(ValueError, match="unknown hessian 'dense'"):
        fit_laplace(model, prior, x, y, hessian="dense", **settings)
    with pytest.raises(ValueError, match=r"matches no parameter.*last_layer"):
        fit_laplace(model, prior, x, y, subset="lastlayer", **settings)
    with pytest.raises(ValueError, match="Gaussian or EmpCov"):
        fit_laplace(model, StudentT(1.0, 3.0), x, y, **settings)
    with pytest.raises(ValueError, match="fixed noise_std"):
        fit_laplace(
            eqx.nn.Linear(5, 2, key=jax.random.key(0)),
            prior,
            x,
            y,
            likelihood=gaussian_likelihood(None),
            fit_map=False,
        )
    with pytest.raises(ValueError, match="unknown predictive method"):
        laplace_predict(fit_laplace(model, prior, x, y, **settings), x, method="sampling")
    big = MLP(20, (300,), 2, key=jax.random.key(0))
    xb = np.random.default_rng(0).normal(size=(10, 20)).astype(np.float32)
    with pytest.raises(ValueError, match=f"limited to {FULL_LIMIT} parameters"):
        fit_laplace(big, prior, xb, np.zeros(10, np.int32), fit_map=False)
    with pytest.raises(ValueError, match="unknown predictive method 'linear'"):
        laplace(model, prior, x, y, predictive="linear", **settings)


def test_kron_is_exact_on_the_last_layer_of_a_regression_mlp():
    """Gaussian likelihood, last layer only: J by the layer's outputs is I and Lambda constant,
    so KFAC is the exact GGN there and kron equals full; with every layer it runs through the
    hidden layer's taps and gives positive variances."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = np.sin(x[:, 0]).astype(np.float32)
    model, prior = MLP(3, (6,), 1, key=jax.random.key(0)), Gaussian(1.0)
    settings = {"likelihood": LIKELIHOOD, "fit_map": False, "subset": "last_layer"}
    full = fit_laplace(model, prior, x, y, **settings)
    kron = fit_laplace(model, prior, x, y, hessian="kron", **settings)
    cov = laplace_cov(full)
    np.testing.assert_allclose(
        kron.curvature.variances(), np.diag(cov), rtol=precision_tolerance(cov)
    )
    assert log_marginal_likelihood(kron) == pytest.approx(log_marginal_likelihood(full), abs=1e-4)
    every = fit_laplace(model, prior, x, y, hessian="kron", likelihood=LIKELIHOOD, fit_map=False)
    assert len(every.curvature.blocks) == 2 and np.all(every.curvature.variances() > 0)
