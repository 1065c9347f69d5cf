"""The linearised network's output covariance T J(x) P^-1 J(x)^T (k x k per input), matrix-free
and block by block (P is block diagonal, so the blocks' terms add):

- diag and dense blocks: per output c, one VJP gives u = J^T e_c (d,), the blocks' covariance
  operator P^-1 u, and one JVP J P^-1 u the covariance's column c;
- KFAC layers: the Jacobian of output c by a layer's weights is sum_t g_ct a~_t^T (g by the
  layer's outputs, from one tapped backward pass per output as KFAC's factors are collected;
  a~ the rows the weight multiplies), so its form is taken in the factors' eigenbases without
  forming the (out, in') gradient per output more than once at a time (`KronCovariance`).

Vmapped over a chunk of inputs and compiled once; memory is a few chunk x d floats, and no
Jacobian (k x d per input) is formed."""

from __future__ import annotations

from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.inference.laplace.approx import LaplaceApprox
from bnn_shift.inference.laplace.gauss_newton import CHUNK_FLOATS, _n_outputs
from bnn_shift.inference.laplace.kron import _tapped_jacobians
from bnn_shift.inference.laplace.operators import Covariance
from bnn_shift.inference.laplace.subset import _subset_vector_device, _with_subset
from bnn_shift.models.params import combine_params
from bnn_shift.typing import PyTree


def _vector_blocks(
    params: PyTree, static: PyTree, selected: tuple[int, ...], covariance: Covariance, xi
) -> jax.Array:  # (k, k)
    """J Sigma J^T of one input over the diag and dense blocks: VJP, Sigma, JVP per output."""
    theta = _subset_vector_device(params, selected)

    def outputs(t):
        return combine_params(_with_subset(params, selected, t), static)(xi).astype(jnp.float32)

    f, jvp = jax.linearize(outputs, theta)
    vjp = jax.linear_transpose(jvp, theta)

    def column(e):
        (u,) = vjp(e)
        return jvp(covariance(u))

    return jax.lax.map(column, jnp.eye(f.size, dtype=f.dtype))


@eqx.filter_jit
def _chunk_covariance(
    params: PyTree,
    static: PyTree,
    selected: tuple[int, ...],
    covariance: Covariance,
    x: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Outputs f (b, k) and J P^-1 J^T (b, k, k) of a chunk of inputs."""
    model = combine_params(params, static)
    f = jax.vmap(model)(x).astype(jnp.float32)
    cov = jnp.zeros((*f.shape, f.shape[-1]), f.dtype)
    if covariance.parts:
        cov = cov + jax.vmap(partial(_vector_blocks, params, static, selected, covariance))(x)
    if covariance.kron:
        _, jacobians, rows = _tapped_jacobians(model, covariance.layers, x)
        for part, jac, a in zip(covariance.kron, jacobians, rows):
            cov = cov + jax.vmap(part.quad)(jac, a)
    return f, cov


def output_covariance(approx: LaplaceApprox, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f(x; theta*) (m, k) and the linearised output covariance T J P^-1 J^T (m, k, k),
    float64, from chunks of CHUNK_FLOATS / d inputs (the last one padded, one compilation)."""
    params = jax.tree.map(jnp.asarray, approx.mean)
    covariance = approx.curvature.covariance()
    _n_outputs(params, approx.static, x)  # checks the model returns a vector per example
    step = min(len(x), max(1, CHUNK_FLOATS // approx.curvature.dim))
    padded = np.concatenate([x, np.zeros((-len(x) % step, *x.shape[1:]), x.dtype)])
    means, covs = [], []
    for start in range(0, len(padded), step):
        f, cov = _chunk_covariance(
            params, approx.static, approx.selected, covariance, padded[start : start + step]
        )
        means.append(np.asarray(f, np.float64))
        covs.append(np.asarray(cov, np.float64))
    cov = approx.temperature * np.concatenate(covs)[: len(x)]
    return np.concatenate(means)[: len(x)], 0.5 * (cov + cov.transpose(0, 2, 1))
