"""The prior's precision over the subset: per leaf the precision R of each of its rows (the
prior must be Gaussian or EmpCov there: a constant precision), dense or diagonal."""

from __future__ import annotations

import jax
import numpy as np

from bnn_shift.priors.base import Prior
from bnn_shift.priors.empcov import EmpCov
from bnn_shift.priors.gaussian import Gaussian
from bnn_shift.typing import PyTree


def _leaf_priors(prior: Prior, params_like: PyTree) -> list[list[tuple[Prior, float]]]:
    """Per leaf, the (built-from-none prior, weight) pairs whose log densities it sums."""
    n = len(jax.tree.leaves(params_like))
    if not prior.children():
        return [[(prior, 1.0)] for _ in range(n)]
    out: list[list[tuple[Prior, float]]] = [[] for _ in range(n)]
    for part in prior.split(params_like):
        for i, terms in zip(part.leaves, _leaf_priors(part.prior, part.of(params_like))):
            out[i] += [(p, w * part.weight) for p, w in terms]
    return out


def _base_row_precision(prior: Prior, leaf: jax.Array) -> np.ndarray:  # (e, e) float64
    if isinstance(prior, Gaussian):
        return np.full((1, 1), prior.std**-2.0)
    if isinstance(prior, EmpCov):
        prior._rows([leaf])  # checks the leaf's shape
        vecs = np.asarray(prior.eigvecs, np.float64)
        return (vecs / np.asarray(prior.prior_var, np.float64)) @ vecs.T
    raise ValueError(
        f"the Laplace approximation needs Gaussian or EmpCov priors (a constant precision) on "
        f"the selected parameters, got {prior.describe()}"
    )


def row_precisions(prior: Prior, params: PyTree) -> list[np.ndarray]:
    """Per leaf, the precision R (e, e) of each of its rows leaf.reshape(-1, e) under the prior
    (e = 1: isotropic; EmpCov: its dense precision V diag(1 / prior_var) V^T)."""
    out = []
    for leaf, terms in zip(jax.tree.leaves(params), _leaf_priors(prior, params)):
        parts = [w * _base_row_precision(p, leaf) for p, w in terms]
        e = max(len(r) for r in parts)
        out.append(sum(r if len(r) == e else r[0, 0] * np.eye(e) for r in parts))
    return out


def _prior_dense(rows: list[np.ndarray], sizes: list[int]) -> np.ndarray:  # (d, d)
    blocks = [np.kron(np.eye(n // len(r)), r) for r, n in zip(rows, sizes)]
    d = sum(sizes)
    out, at = np.zeros((d, d)), 0
    for block in blocks:
        out[at : at + len(block), at : at + len(block)] = block
        at += len(block)
    return out


def _prior_diag(rows: list[np.ndarray], sizes: list[int]) -> np.ndarray:  # (d,)
    return np.concatenate([np.tile(np.diag(r), n // len(r)) for r, n in zip(rows, sizes)])


def prior_weights(prior: Prior, params: PyTree) -> list[float]:
    """Per leaf, the total weight w its prior terms enter the log density with (1 unless a
    `Temperature` divides them): multiplying every covariance by 1/c changes the leaf's log
    density by -(c - 1)/2 sum_rows theta^T R theta + (n/2) w log c (n entries)."""
    return [sum(w for _, w in terms) for terms in _leaf_priors(prior, params)]
