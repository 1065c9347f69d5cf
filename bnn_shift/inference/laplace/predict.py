"""Predictives of a Laplace approximation (or of a saved variational `Posterior`): Monte
Carlo over draws, the linearised network (GLM) and the probit approximation."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.inference.laplace.approx import LaplaceApprox, sample_laplace
from bnn_shift.inference.laplace.curvature import Curvature, DiagBlock
from bnn_shift.inference.laplace.gauss_newton import _batches, _jacobians, _n_outputs
from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.inference.posterior import Posterior
from bnn_shift.models.params import combine_params
from bnn_shift.typing import PyTree

METHODS = ("mc", "glm", "probit")


class LaplacePrediction(NamedTuple):
    predictive: np.ndarray  # (m, k) class probabilities (categorical) or predictive means
    f_mean: np.ndarray  # (m, k) mean of the model outputs under q
    f_var: np.ndarray  # (m, k) their variance (add noise_std^2 for a Gaussian's targets)


def approx_from_posterior(posterior: Posterior) -> LaplaceApprox:
    """A diagonal approximation N(mean, std^2) from a variational `Posterior` ("mean", "std"):
    what a saved Laplace (or mfvi) posterior keeps, its correlations dropped."""
    if not {"mean", "std"} <= set(posterior.variational):
        raise ValueError("the posterior holds no variational 'mean' and 'std' (not a Laplace fit)")
    mean, std = posterior.variational["mean"], jax.tree.leaves(posterior.variational["std"])
    selected = tuple(i for i, s in enumerate(std) if np.any(np.asarray(s) > 0))
    var = np.concatenate([np.asarray(std[i], np.float64).ravel() ** 2 for i in selected])
    every = np.arange(var.size)
    block = DiagBlock(np.zeros(var.size), 1.0 / np.where(var > 0, var, np.inf))
    return LaplaceApprox(
        mean=jax.tree.map(np.asarray, mean),
        static=posterior.static,
        likelihood=posterior.likelihood,
        selected=selected,
        curvature=Curvature(((every, block),), var.size),
        temperature=1.0,
        log_joint=math.nan,
        subset_precision=None,
        settings=dict(posterior.attrs),
    )


def _outputs(params: PyTree, static: PyTree, x: jax.Array) -> jax.Array:  # (m, k)
    return jax.vmap(combine_params(params, static))(x).astype(jnp.float32)


def _summary(samples: np.ndarray, likelihood: Likelihood) -> LaplacePrediction:
    """Output samples (s, m, k) -> the Monte Carlo predictive."""
    mean, var = samples.mean(0), samples.var(0)
    if likelihood.name == "categorical":
        return LaplacePrediction(np.asarray(jax.nn.softmax(samples, -1)).mean(0), mean, var)
    return LaplacePrediction(mean, mean, var)


def _linearised(approx: LaplaceApprox, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f(x; theta*) (m, k) and the GLM output covariance T J P^-1 J^T (m, k, k)."""
    params = jax.tree.map(jnp.asarray, approx.mean)
    k = _n_outputs(params, approx.static, x)
    means, covs = [], []
    for xb, _ in _batches(x, None, k * approx.curvature.dim):
        f, jac = _jacobians(params, approx.static, approx.selected, xb)
        means.append(np.asarray(f, np.float64))
        covs.append(approx.temperature * approx.curvature.quad(np.asarray(jac, np.float64)))
    return np.concatenate(means), np.concatenate(covs)


def laplace_predict(
    source: LaplaceApprox | Posterior,
    x,
    *,
    method: str = "glm",
    n_samples: int = 100,
    seed: int = 0,
) -> LaplacePrediction:
    """Predictive on x (m, ...): "mc" (the network at draws of q: a Posterior's own draws, or
    n_samples new ones), "glm" (the network linearised at theta*, f + J (theta - theta*), so
    f ~ N(f*, T J P^-1 J^T); classifiers average softmax over n_samples draws of f) or
    "probit" (classifiers: softmax(f* / sqrt(1 + pi/8 var f))). A Posterior enters through its
    marginal sds (`approx_from_posterior`) for glm and probit."""
    if method not in METHODS:
        raise ValueError(f"unknown predictive method {method!r}; choose one of {METHODS}")
    approx = source if isinstance(source, LaplaceApprox) else approx_from_posterior(source)
    if method == "probit" and approx.likelihood.name != "categorical":
        raise ValueError("the probit predictive is for classifiers (a categorical likelihood)")
    x = np.asarray(x, np.float32)
    if method == "mc":
        if isinstance(source, Posterior):
            draws = source.predict_draws(x, per_draw=_outputs)
        else:
            params = sample_laplace(approx, n_samples, seed)
            draws = np.asarray(jax.lax.map(lambda p: _outputs(p, approx.static, x), params))
        return _summary(np.asarray(draws, np.float64), approx.likelihood)
    f, cov = _linearised(approx, x)
    var = np.diagonal(cov, axis1=1, axis2=2)
    if method == "probit":
        probs = jax.nn.softmax(f / np.sqrt(1 + math.pi / 8 * var), -1)
        return LaplacePrediction(np.asarray(probs, np.float64), f, var)
    if approx.likelihood.name != "categorical":
        return LaplacePrediction(f, f, var)
    vals, vecs = np.linalg.eigh(cov)
    root = vecs * np.sqrt(np.clip(vals, 0, None))[:, None, :]  # (m, k, k)
    z = np.random.default_rng(seed).standard_normal((n_samples, *f.shape))
    samples = f + np.einsum("mkl,sml->smk", root, z)
    return LaplacePrediction(np.asarray(jax.nn.softmax(samples, -1)).mean(0), f, var)
