"""Predictives of a Laplace approximation (or of a saved variational `Posterior`): Monte
Carlo over draws, the linearised network (GLM) and the probit approximation; and
`LaplacePosterior`, the engine's Posterior that predicts by the one chosen."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from bnn_shift.inference.laplace.approx import LaplaceApprox, sample_laplace
from bnn_shift.inference.laplace.curvature import Curvature, DiagBlock
from bnn_shift.inference.laplace.linearised import output_covariance
from bnn_shift.inference.laplace.persist import GROUP, approx_dataset, approx_from_dataset
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
        log_joint=math.nan,  # no evidence: the data are not kept
        prior_quad=np.full(len(selected), math.nan),
        prior_weight=np.full(len(selected), math.nan),
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


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown predictive method {method!r}; choose one of {METHODS}")


def _approx(source: LaplaceApprox | Posterior) -> LaplaceApprox:
    if isinstance(source, LaplaceApprox):
        return source
    return source.approx if isinstance(source, LaplacePosterior) else approx_from_posterior(source)


def glm_draws(
    f: np.ndarray, cov: np.ndarray, n_samples: int, seed: int
) -> np.ndarray:  # (n_samples, m, k)
    """Draws of the linearised outputs N(f (m, k), cov (m, k, k)), every row from the same
    standard normals (n_samples, k): a row's draws do not depend on the rows beside it."""
    vals, vecs = np.linalg.eigh(cov)
    root = vecs * np.sqrt(np.clip(vals, 0, None))[:, None, :]  # (m, k, k)
    z = np.random.default_rng(seed).standard_normal((n_samples, f.shape[-1]))
    return f + np.einsum("mkl,sl->smk", root, z)


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
    marginal sds (`approx_from_posterior`) for glm and probit, a `LaplacePosterior` through
    the approximation it keeps."""
    check_method(method)
    approx = _approx(source)
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
    f, cov = output_covariance(approx, x)
    var = np.diagonal(cov, axis1=1, axis2=2)
    if method == "probit":
        probs = jax.nn.softmax(f / np.sqrt(1 + math.pi / 8 * var), -1)
        return LaplacePrediction(np.asarray(probs, np.float64), f, var)
    if approx.likelihood.name != "categorical":
        return LaplacePrediction(f, f, var)
    samples = glm_draws(f, cov, n_samples, seed)
    return LaplacePrediction(np.asarray(jax.nn.softmax(samples, -1)).mean(0), f, var)


@dataclass
class LaplacePosterior(Posterior):
    """The `laplace` engine's Posterior: draws of q like any variational one, and the
    approximation itself (saved with it, so a loaded copy is a LaplacePosterior too), so that
    it predicts by `predictive`: "mc" (the draws), "glm" (the mean of softmax over
    n_predictive_samples draws of the linearised outputs, which are its per-draw
    probabilities) or "probit" (a closed form without draws)."""

    approx: LaplaceApprox = field(kw_only=True)
    predictive: str = field(default="mc", kw_only=True)
    n_predictive_samples: int = field(default=100, kw_only=True)

    def __post_init__(self):
        super().__post_init__()
        check_method(self.predictive)

    def predict_proba(self, x, batch_size: int = 4096) -> np.ndarray:  # (n, k)
        if self.predictive == "mc" or self.likelihood.name != "categorical":
            return super().predict_proba(x, batch_size)
        x = np.asarray(x, np.float32)
        seed, n = self.attrs.get("seed", 0), self.n_predictive_samples
        predict = partial(laplace_predict, self, method=self.predictive, n_samples=n, seed=seed)
        return np.concatenate(
            [predict(x[i : i + batch_size]).predictive for i in range(0, len(x), batch_size)]
        )

    def to_datatree(self) -> xr.DataTree:
        """The Posterior's groups plus "laplace", the approximation (`persist`): a loaded copy
        predicts by the same predictive."""
        tree = super().to_datatree()
        tree[GROUP] = xr.DataTree(
            approx_dataset(self.approx, self.predictive, self.n_predictive_samples)
        )
        return tree

    @classmethod
    def from_saved(cls, posterior: Posterior, group: xr.Dataset) -> LaplacePosterior:
        """A loaded Posterior and its file's "laplace" group -> the LaplacePosterior saved."""
        approx, predictive, n = approx_from_dataset(
            group, posterior.variational["mean"], posterior.static, posterior.likelihood
        )
        fields = {f.name: getattr(posterior, f.name) for f in dataclasses.fields(Posterior)}
        return cls(**fields, approx=approx, predictive=predictive, n_predictive_samples=n)

    def predict_proba_draws(self, x) -> np.ndarray:  # (draws, n, k)
        if self.predictive == "mc":
            return self.predict_draws(x)
        if self.predictive == "probit":
            raise ValueError(
                "the probit predictive is a closed form without draws; per-draw metrics "
                "(mutual_info) need predictive 'glm' or 'mc'"
            )
        f, cov = output_covariance(self.approx, np.asarray(x, np.float32))
        samples = glm_draws(f, cov, self.n_predictive_samples, self.attrs.get("seed", 0))
        return np.asarray(jax.nn.softmax(samples, -1), np.float64)
