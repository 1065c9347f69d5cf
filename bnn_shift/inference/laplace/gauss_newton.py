"""The generalised Gauss-Newton curvature of the negative log-likelihood over the subset,
GGN = sum_i J_i^T Lambda_i J_i: the outputs' Jacobians by chunks of examples and the
likelihood's output precisions Lambda_i."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.inference.laplace.subset import (
    _subset_vector,
    _subset_vector_device,
    _with_subset,
)
from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.models.params import combine_params
from bnn_shift.typing import PyTree

CHUNK_FLOATS = 2**22  # Jacobian entries (examples x outputs x parameters) per compiled call


def _loglik_of_outputs(likelihood: Likelihood, f: jax.Array, y: jax.Array) -> jax.Array:
    """log p(y | f) of one example from the model's outputs f (k,), through the likelihood
    itself (applied to an identity model)."""
    identity = eqx.nn.Identity()
    return likelihood.loglik(identity, identity, f[None], y[None])[0]


@eqx.filter_jit
def _jacobians(
    params: PyTree, static: PyTree, selected: tuple[int, ...], x: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Outputs f (b, k) and their Jacobians J (b, k, d) by the subset at `params`."""
    theta = _subset_vector_device(params, selected)

    def outputs(t, xi):
        return combine_params(_with_subset(params, selected, t), static)(xi).astype(jnp.float32)

    f = jax.vmap(lambda xi: outputs(theta, xi))(x)
    return f, jax.vmap(jax.jacrev(outputs), in_axes=(None, 0))(theta, x)


@eqx.filter_jit
def _output_precisions(likelihood: Likelihood, f: jax.Array, y: jax.Array) -> jax.Array:
    """Lambda_i = -Hessian of log p(y_i | f_i) by f_i -> (b, k, k)."""
    hess = jax.hessian(lambda fi, yi: _loglik_of_outputs(likelihood, fi, yi))
    return -jax.vmap(hess)(f, y)


@jax.jit
def _ggn_full(jac: jax.Array, lam: jax.Array) -> jax.Array:  # (d, d)
    return jnp.einsum("bkd,bkl,ble->de", jac, lam, jac, precision="highest")


@jax.jit
def _ggn_diag(jac: jax.Array, lam: jax.Array) -> jax.Array:  # (d,)
    return jnp.einsum("bkd,bkl,bld->d", jac, lam, jac, precision="highest")


def _batches(x: np.ndarray, y: np.ndarray | None, per_example: int):
    """(x, y) chunks holding at most CHUNK_FLOATS Jacobian entries (y None: None chunks)."""
    step = max(1, CHUNK_FLOATS // max(per_example, 1))
    for start in range(0, len(x), step):
        rows = slice(start, start + step)
        yield jnp.asarray(x[rows]), None if y is None else jnp.asarray(y[rows])


def _n_outputs(params: PyTree, static: PyTree, x: np.ndarray) -> int:
    shape = eqx.filter_eval_shape(combine_params(params, static), x[0]).shape
    if len(shape) != 1:
        raise ValueError(
            f"the Laplace approximation needs a model returning a vector per example, got {shape}"
        )
    return shape[0]


def check_likelihood(likelihood: Likelihood) -> None:
    """The GGN needs -log p(y | f) convex in the outputs f: categorical, or Gaussian with a
    fixed noise_std."""
    fixed_gaussian = likelihood.name.startswith("gaussian(") and "learned" not in likelihood.name
    if likelihood.name != "categorical" and not fixed_gaussian:
        raise ValueError(
            f"the Laplace approximation supports a categorical likelihood or a Gaussian one with "
            f"a fixed noise_std, got {likelihood.describe()}"
        )


def ggn(
    params: PyTree,
    static: PyTree,
    likelihood: Likelihood,
    x: np.ndarray,
    y: np.ndarray,
    selected: tuple[int, ...],
    *,
    diagonal: bool = False,
) -> np.ndarray:
    """The GGN of -sum_i log p(y_i | x_i) over the subset: (d, d), or its diagonal (d,);
    float32 sums per chunk of examples, accumulated in float64."""
    d = _subset_vector(params, selected).size
    total = np.zeros(d if diagonal else (d, d))
    for xb, yb in _batches(x, y, _n_outputs(params, static, x) * d):
        f, jac = _jacobians(params, static, selected, xb)
        lam = _output_precisions(likelihood, f, yb)
        total += np.asarray((_ggn_diag if diagonal else _ggn_full)(jac, lam), np.float64)
    return total
