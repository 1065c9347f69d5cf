"""The Laplace approximation q = N(theta*, T P^-1) around a MAP fit: building its curvature,
its evidence, marginal sds and draws."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.inference.laplace.curvature import Curvature, DiagBlock, FullBlock
from bnn_shift.inference.laplace.gauss_newton import check_likelihood, ggn
from bnn_shift.inference.laplace.kron import _kron_block, _kron_layers, kron_factors
from bnn_shift.inference.laplace.prior import (
    _prior_dense,
    _prior_diag,
    prior_weights,
    row_precisions,
)
from bnn_shift.inference.laplace.subset import (
    Subset,
    _positions,
    _sizes,
    _subset_vector,
    select_leaves,
)
from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.inference.map import map_fit
from bnn_shift.inference.target import Target, make_target
from bnn_shift.models.params import param_paths, partition_params
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree

HESSIANS = ("full", "diag", "kron")
FULL_LIMIT = 5000  # parameters: hessian="full" holds a dense (d, d) float64 matrix


@dataclass(frozen=True)
class LaplaceApprox:
    """q = N(mean, T P^-1) over the subset's leaves (`selected`, flattening order), the other
    leaves fixed at `mean`; `curvature` holds the untempered precision P."""

    mean: PyTree  # MAP parameters (host arrays)
    static: PyTree
    likelihood: Likelihood
    selected: tuple[int, ...]
    curvature: Curvature
    temperature: float
    log_joint: float  # log p(D | theta*) + log p(theta*), untempered
    prior_quad: np.ndarray  # (n_selected,) per subset leaf sum_rows theta*^T R theta*
    prior_weight: np.ndarray  # (n_selected,) per subset leaf its prior's weight (`prior_weights`)
    settings: dict[str, Any]


def build_curvature(
    hessian: str,
    params: PyTree,
    static: PyTree,
    likelihood: Likelihood,
    prior: Prior,
    data: tuple[np.ndarray, np.ndarray],
    selected: tuple[int, ...],
) -> Curvature:
    """The untempered posterior precision over the subset in the chosen structure."""
    x, y = data
    leaves = jax.tree.leaves(params)
    rows = [row_precisions(prior, params)[i] for i in selected]
    sizes = _sizes(params, selected)
    everything = np.arange(sum(sizes))
    if hessian == "full":
        block = FullBlock(
            ggn(params, static, likelihood, x, y, selected), _prior_dense(rows, sizes)
        )
        return Curvature(((everything, block),), everything.size)
    layers = _kron_layers(params, selected) if hessian == "kron" else {}
    blocks = []
    factors = kron_factors(params, static, likelihood, x, y, tuple(layers)) if layers else []
    for layer, factor in zip(layers, factors):
        which = layers[layer]
        out = leaves[selected[which[0]]].shape[0]
        kron = _kron_block(layer, factor, [rows[j] for j in which], out)
        blocks.append((_positions(sizes, which), kron))
    rest = [j for j in range(len(selected)) if not any(j in w for w in layers.values())]
    if rest:
        subset = tuple(selected[j] for j in rest)
        diag = ggn(params, static, likelihood, x, y, subset, diagonal=True)
        prior_diag = _prior_diag([rows[j] for j in rest], [sizes[j] for j in rest])
        blocks.append((_positions(sizes, rest), DiagBlock(diag, prior_diag)))
    return Curvature(tuple(blocks), everything.size)


def _row_quad(leaf: np.ndarray, row_precision: np.ndarray) -> float:
    """sum over the leaf's rows (leaf.reshape(-1, e)) of row^T R row."""
    rows = leaf.reshape(-1, len(row_precision))
    return float(np.einsum("ri,ij,rj->", rows, row_precision, rows))


@eqx.filter_jit
def _loglik_sum(target: Target, params: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.sum(target.loglik(params, (x, y)))


def fit_laplace(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    subset: Subset = "all",
    hessian: str = "full",
    likelihood: str | Likelihood = "categorical",
    temperature: float = 1.0,
    fit_map: bool = True,
    map_settings: dict[str, Any] | None = None,
) -> LaplaceApprox:
    """The Laplace approximation around the MAP: `map_fit(model, ..., **map_settings)` first
    when fit_map, else `model` is taken to be the MAP (any equinox model). See the package
    docstring for the subset, the structures and what each approximates."""
    if hessian not in HESSIANS:
        raise ValueError(f"unknown hessian {hessian!r}; choose one of {HESSIANS}")
    target, params, x, y = make_target(
        model, prior, x, y, likelihood=likelihood, temperature=temperature
    )
    check_likelihood(target.likelihood)
    selected = select_leaves(params, subset)
    d = sum(_sizes(params, selected))
    if hessian == "full" and d > FULL_LIMIT:
        raise ValueError(
            f"hessian='full' is limited to {FULL_LIMIT} parameters (a dense d x d matrix); the "
            f"subset has {d}: choose a smaller subset (e.g. 'last_layer') or 'diag' / 'kron'"
        )
    if fit_map:
        settings = {"progress": False} | (map_settings or {})
        fitted = map_fit(model, prior, x, y, likelihood=target.likelihood, **settings)
        params = partition_params(fitted.draw(0))[0]
    curvature = build_curvature(
        hessian, params, target.static, target.likelihood, prior, (x, y), selected
    )
    log_joint = float(_loglik_sum(target, params, jnp.asarray(x), jnp.asarray(y)))
    rows = row_precisions(prior, params)
    leaves = jax.tree.leaves(params)
    quad = [_row_quad(np.asarray(leaves[i], np.float64), rows[i]) for i in selected]
    paths = param_paths(params)
    return LaplaceApprox(
        mean=jax.tree.map(np.asarray, params),
        static=target.static,
        likelihood=target.likelihood,
        selected=selected,
        curvature=curvature,
        temperature=target.temperature,
        log_joint=log_joint + float(prior.log_prob(params)),
        prior_quad=np.asarray(quad),
        prior_weight=np.asarray([prior_weights(prior, params)[i] for i in selected]),
        settings={
            "subset": subset if isinstance(subset, str) else [str(s) for s in subset],
            "subset_paths": [paths[i] for i in selected],
            "hessian": hessian,
            "prior": prior.describe(),
            "n_train": target.n,
        },
    )


def log_marginal_likelihood(approx: LaplaceApprox) -> float:
    """Laplace evidence: log_joint(theta*) / T + (d/2) log 2 pi - 1/2 log det(P / T), the log
    normaliser of the tempered posterior's Gaussian approximation; at T = 1 the log evidence
    log p(D) (exact for Bayesian linear regression with known noise and hessian="full"). With
    a subset it integrates the subset only: log p(D, theta_rest*)."""
    curvature = approx.curvature
    return evidence(approx.log_joint, curvature.log_det(), curvature.dim, approx.temperature)


def evidence(log_joint, log_det, d: int, temperature: float):
    """log_joint / T + (d/2) log 2 pi T - 1/2 log det P (floats or jax scalars)."""
    return log_joint / temperature + 0.5 * d * math.log(2 * math.pi * temperature) - 0.5 * log_det


def _subset_tree(approx: LaplaceApprox, flat: np.ndarray, fill: Callable) -> PyTree:
    """Leaves from (..., d) values over the subset, `fill(leaf)` elsewhere (float32)."""
    leaves, treedef = jax.tree.flatten(approx.mean)
    lead = flat.shape[:-1]
    out = [fill(leaf) for leaf in leaves]
    at = 0
    for i in approx.selected:
        size = leaves[i].size
        out[i] = flat[..., at : at + size].reshape(*lead, *leaves[i].shape).astype(np.float32)
        at += size
    return jax.tree.unflatten(treedef, out)


def marginal_std(approx: LaplaceApprox) -> PyTree:
    """Marginal sds sqrt(T diag P^-1) as a params pytree (0 outside the subset)."""
    std = np.sqrt(approx.temperature * approx.curvature.variances())
    return _subset_tree(approx, std, np.zeros_like)


def sample_laplace(approx: LaplaceApprox, n_samples: int, seed: int = 0) -> PyTree:
    """n_samples draws from q as a params pytree with a leading draw axis (host arrays)."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    z = np.random.default_rng(seed).standard_normal((n_samples, approx.curvature.dim))
    centre = _subset_vector(approx.mean, approx.selected)
    flat = centre + math.sqrt(approx.temperature) * approx.curvature.whiten_inverse(z)
    return _subset_tree(
        approx, flat, lambda leaf: np.broadcast_to(leaf, (n_samples, *leaf.shape)).copy()
    )
