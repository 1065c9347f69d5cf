"""The matrix-free linearised predictive against the materialised one: T J P^-1 J^T with the
Jacobians J (m, k, d) formed and P^-1 inverted densely from each block's own definition
(full: GGN + prior; diag: their diagonals; kron: G kron A + I kron R in the block's order);
and the `LaplacePosterior` that predicts by it. The matrix-free products run in float32."""

from __future__ import annotations

import dataclasses
import importlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.inference import Posterior
from bnn_shift.inference.laplace import (
    DiagBlock,
    FullBlock,
    KronBlock,
    LaplacePosterior,
    fit_laplace,
    laplace,
    laplace_predict,
    output_covariance,
)
from bnn_shift.inference.laplace.gauss_newton import _jacobians
from bnn_shift.priors import Gaussian
from bnn_shift.shift import evaluate, noise_sweep

from .test_laplace import PooledConv
from .test_laplace_tuning import classifier_problem


def block_precision(block) -> np.ndarray:  # (b, b)
    if isinstance(block, FullBlock):
        return block.ggn + block.prior
    if isinstance(block, DiagBlock):
        return np.diag(block.ggn + block.prior)
    assert isinstance(block, KronBlock)
    by_matrix = np.kron(block.g, block.a) + np.kron(np.eye(len(block.g)), block.r)
    out = np.zeros_like(by_matrix)
    out[np.ix_(block.order, block.order)] = by_matrix  # vec(M) entry j is block entry order[j]
    return out


def materialised(approx, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f (m, k) and T J Sigma J^T (m, k, k) from dense Jacobians and a dense Sigma."""
    sigma = np.zeros((approx.curvature.dim,) * 2)
    for at, block in approx.curvature.blocks:
        sigma[np.ix_(at, at)] = np.linalg.inv(block_precision(block))
    params = jax.tree.map(jnp.asarray, approx.mean)
    f, jac = _jacobians(params, approx.static, approx.selected, jnp.asarray(x))
    jac = np.asarray(jac, np.float64)
    return np.asarray(f), approx.temperature * np.einsum("mkd,de,mle->mkl", jac, sigma, jac)


def conv_problem() -> tuple[PooledConv, Gaussian, np.ndarray, np.ndarray]:
    """One 3x3 conv (2 -> 3 channels, KFC: 16 positions) pooled into 3 logits."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 2, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=20)
    model = PooledConv(eqx.nn.Conv2d(2, 3, 3, stride=1, padding=1, key=jax.random.key(3)))
    return model, Gaussian(0.5), x, y


@pytest.mark.parametrize(
    ("problem", "hessian", "subset"),
    [
        (classifier_problem, "full", "all"),
        (classifier_problem, "full", "last_layer"),
        (classifier_problem, "diag", "all"),
        (classifier_problem, "kron", "all"),
        (classifier_problem, "kron", ["layers.0.weight", "layers.1.bias"]),
        (conv_problem, "kron", "all"),
    ],
)
def test_matrix_free_output_covariance_is_the_materialised_one(
    monkeypatch, problem, hessian, subset
):
    """EmpCov rows on the MLP's first layer (dense R inside kron), a bias-only KFAC layer next
    to a weight-only one, a conv layer; T = 0.5, chunks of 3 inputs (the last one padded)."""
    model, prior, x, y = problem()
    approx = fit_laplace(model, prior, x, y, hessian=hessian, subset=subset, temperature=0.5,
                         fit_map=False)  # fmt: skip
    linearised = importlib.import_module("bnn_shift.inference.laplace.linearised")
    monkeypatch.setattr(linearised, "CHUNK_FLOATS", 3 * approx.curvature.dim)
    f, cov = output_covariance(approx, x[:7])
    f_ref, cov_ref = materialised(approx, x[:7])
    np.testing.assert_allclose(f, f_ref, rtol=1e-6, atol=1e-6)
    # float32 products of O(1) terms, each good to ~eps32 relative
    np.testing.assert_allclose(cov, cov_ref, rtol=1e-4, atol=1e-5 * np.abs(cov_ref).max())
    assert np.all(np.linalg.eigvalsh(cov) > -1e-6)


def test_laplace_posterior_predicts_by_the_chosen_predictive(tmp_path):
    model, prior, x, y = classifier_problem()
    post = laplace(
        model, prior, x, y, hessian="kron", fit_map=False, n_samples=8, predictive="glm", seed=3
    )
    assert isinstance(post, LaplacePosterior) and post.attrs["predictive"] == "glm"
    glm = laplace_predict(post.approx, x[:10], method="glm", n_samples=100, seed=3).predictive
    np.testing.assert_allclose(post.predict_proba(x[:10], batch_size=4), glm, rtol=1e-6)
    draws = post.predict_proba_draws(x[:10])
    assert draws.shape == (100, 10, 3)
    np.testing.assert_allclose(draws.mean(0), glm, rtol=1e-6)
    table = evaluate(
        {"glm": post}, (x, y), noise_sweep((0.0, 1.0)), metrics=("accuracy", "mutual_info"),
        progress=False,
    )  # fmt: skip
    assert set(table.metric) == {"accuracy", "mutual_info"}
    probit = dataclasses.replace(post, predictive="probit")
    probit_ref = laplace_predict(post.approx, x[:10], method="probit").predictive
    np.testing.assert_allclose(probit.predict_proba(x[:10]), probit_ref, rtol=1e-6)
    with pytest.raises(ValueError, match="without draws"):
        probit.predict_proba_draws(x[:10])
    mc = dataclasses.replace(post, predictive="mc")
    plain = Posterior(post.static, post.draws, kind="variational")
    np.testing.assert_allclose(mc.predict_proba(x[:10]), plain.predict_proba(x[:10]), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown predictive method 'linear'"):
        dataclasses.replace(post, predictive="linear")


@pytest.mark.parametrize(
    ("subset", "hessian", "predictive"),
    [("all", "kron", "glm"), ("all", "diag", "probit"), ("last_layer", "full", "glm")],
)
def test_a_saved_laplace_posterior_predicts_as_the_fitted_one(
    tmp_path, subset, hessian, predictive
):
    """The file keeps the approximation: the loaded posterior is a LaplacePosterior with the
    same predictive, curvature and evidence terms, and predicts the same probabilities."""
    model, prior, x, y = classifier_problem()
    post = laplace(model, prior, x, y, subset=subset, hessian=hessian, fit_map=False,
                   n_samples=8, predictive=predictive, seed=3)  # fmt: skip
    loaded = Posterior.load(post.save(tmp_path / "laplace.nc"), model)
    assert isinstance(loaded, LaplacePosterior) and loaded.predictive == predictive
    assert loaded.approx.curvature.log_det() == post.approx.curvature.log_det()
    assert loaded.approx.log_joint == post.approx.log_joint
    assert loaded.approx.selected == post.approx.selected
    np.testing.assert_allclose(loaded.predict_proba(x[:10]), post.predict_proba(x[:10]), rtol=1e-6)
    np.testing.assert_array_equal(loaded.attrs["log_marginal_likelihood"],
                                  post.attrs["log_marginal_likelihood"])  # fmt: skip
