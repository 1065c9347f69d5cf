"""EmpCov for conv first layers (patch covariance) and the reference code's product form."""

import jax
import numpy as np
import pytest

from bnn_shift.priors import EmpCov, patch_covariance


def planted_images(n=60, size=8, seed=0):
    """Two-channel images whose second channel is the first plus 2: every 3x3x2 patch p has
    p[ch1] - p[ch0] = 2 away from the zero padding, so with VALID patches the direction
    u = (-e_pixel, +e_pixel) has zero variance for each of the 9 pixel positions."""
    base = np.random.default_rng(seed).normal(size=(n, size, size, 1))
    return np.concatenate([base, base + 2.0], axis=-1)


def null_directions(d_channel=9):
    u = np.zeros((d_channel, 2 * d_channel))
    for i in range(d_channel):
        u[i, i], u[i, d_channel + i] = -1 / np.sqrt(2), 1 / np.sqrt(2)
    return u  # rows are unit vectors in (C, kh, kw) order


def prior_cov(prior: EmpCov) -> np.ndarray:
    v = np.asarray(prior.eigvecs, np.float64)
    return v @ np.diag(np.asarray(prior.prior_var, np.float64)) @ v.T


def test_conv_empcov_planted_dependency_gets_eps_variance():
    images = planted_images()
    eps = 1e-8
    prior = EmpCov.from_patches(images, kernel_size=3, padding=0, scale=0.1, eps=eps)
    assert prior.event_shape == (2, 3, 3)
    cov = prior_cov(prior)
    np.testing.assert_allclose(cov, cov.T, atol=1e-12)
    # float32 storage of eigvecs/variances bounds the accuracy of the rebuilt matrix.
    assert np.linalg.eigvalsh(cov).min() > 0.5 * eps
    for u in null_directions():
        assert u @ cov @ u == pytest.approx(eps, rel=1e-2, abs=1e-9)
    # Along a direction the data does vary in, the variance is alpha * data variance + eps.
    sigma = patch_covariance(images, 3)
    w = np.zeros(18)
    w[4], w[13] = 1 / np.sqrt(2), 1 / np.sqrt(2)
    assert w @ cov @ w == pytest.approx(prior.alpha * (w @ sigma @ w) + eps, rel=1e-4)


def test_conv_empcov_acts_on_conv_kernels():
    prior = EmpCov.from_patches(planted_images(), kernel_size=3, padding=1)
    kernel = prior.sample(jax.random.key(0), np.zeros((6, 2, 3, 3), np.float32))
    assert kernel.shape == (6, 2, 3, 3)
    rows = np.asarray(kernel, np.float64).reshape(6, 18)
    cov = prior_cov(prior)
    expected = -0.5 * np.einsum("ij,jk,ik->", rows, np.linalg.inv(cov), rows) - 3 * (
        18 * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1]
    )
    assert float(prior.log_prob(kernel)) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match=r"rows of shape \(2, 3, 3\)"):
        prior.log_prob(np.zeros((6, 18), np.float32))


def test_conv_sample_covariance_matches_within_monte_carlo_error():
    prior = EmpCov.from_patches(planted_images(), kernel_size=3)
    n = 20_000
    draws = np.asarray(prior.sample(jax.random.key(1), np.zeros((n, 2, 3, 3), np.float32)))
    emp = np.cov(draws.reshape(n, 18), rowvar=False)
    cov = prior_cov(prior)
    # Var of a sample covariance entry is (C_ii C_jj + C_ij^2)/n; allow 5 standard errors.
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(emp - cov) < 5 * se + 1e-9)


def test_product_form_prior_variances():
    x = np.random.default_rng(0).normal(size=(500, 4)) * np.array([3.0, 1.0, 0.1, 0.0])
    prior = EmpCov.from_data(x, form="product", empcov_wd=100.0, scale=0.1, eps=1e-10)
    lam = np.asarray(prior.data_var, np.float64)
    expected = 1.0 / (100.0 / (lam + 1e-10) + 100.0)  # (empcov_wd Sigma^-1 + wd I)^-1
    np.testing.assert_allclose(np.asarray(prior.prior_var), expected, rtol=1e-5)
    # capped at 1/wd for large variance, ~lam/empcov_wd for small, ~1e-12 on the dead feature
    assert np.asarray(prior.prior_var).max() < 0.01
    assert np.asarray(prior.prior_var).min() == pytest.approx(1e-12, rel=1e-3)
    assert prior.alpha is None and "product form" in prior.describe()


def test_bad_form_and_covariance_errors():
    x = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(ValueError, match="unknown EmpCov form"):
        EmpCov.from_data(x, form="sum")
    with pytest.raises(ValueError, match="not positive semi-definite"):
        EmpCov(np.diag([1.0, -1.0]), alpha=0.01)
    with pytest.raises(ValueError, match="square"):
        EmpCov(np.ones((2, 3)), alpha=0.01)
    with pytest.raises(ValueError, match="NaN or inf"):
        EmpCov(np.array([[1.0, np.inf], [np.inf, 1.0]]), alpha=0.01)
