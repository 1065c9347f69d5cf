"""Laplace approximation around a MAP fit: a Gaussian over a subset of the parameters whose
precision is the generalised Gauss-Newton (GGN) curvature of the negative log-likelihood plus
the prior's own precision; its evidence; and its predictives.

Conventions (tempered posterior (likelihood * prior)^(1/T), as `Target`):

    P = GGN(theta*) + prior precision                 (untempered, over the subset, (d, d))
    q = N(theta*, T P^-1)                             (parameters outside the subset stay at MAP)
    GGN = sum_i J_i^T Lambda_i J_i,  J_i = d f(x_i) / d theta (k, d),
    Lambda_i = -d^2 log p(y_i | f) / d f^2 (k, k): I / noise_std^2 (Gaussian, fixed noise, where
    the GGN is the Hessian for a linear model), diag(p) - p p^T (categorical, p = softmax(f)).

Curvature structures (`hessian`):
- "full": dense P, exact (GGN and prior precision), for at most FULL_LIMIT parameters.
- "diag": diag(P): the GGN's diagonal plus the prior precision's diagonal (for EmpCov the
  diagonal of its dense row precision, so the marginal sds are 1/sqrt(diag P), the conditional
  and not the marginal sds of the dense precision: never wider than those).
- "kron": KFAC for every selected `eqx.nn.Linear` (weight with its bias): its GGN block is
  approximated by G (out, out) kron A (in+1, in+1), G = sum_i J_s,i^T Lambda_i J_s,i with
  J_s the Jacobian of f by the layer's outputs, A = mean_i [a_i, 1][a_i, 1]^T of its inputs.
  The prior precision I kron R (R: a row's precision, dense for EmpCov) is added exactly:
  P = (I kron S)(G kron S^-1 A S^-T + I)(I kron S^T), R = S S^T, diagonalised by the
  eigenvectors of G and of S^-1 A S^-T. Other selected leaves get the "diag" structure, and
  the layers are independent of each other (block diagonal).

Everything after the GGN's float32 sums is float64 on the host.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.models.params import combine_params, path_to_str
from bnn_shift.priors.compose import Selector, selects
from bnn_shift.typing import PyTree

HESSIANS = ("full", "diag", "kron")
METHODS = ("mc", "glm", "probit")
FULL_LIMIT = 5000  # parameters: hessian="full" holds a dense (d, d) float64 matrix
CHUNK_FLOATS = 2**22  # Jacobian entries (examples x outputs x parameters) per compiled call

Subset = str | Sequence[Selector]


# --- subsets ----------------------------------------------------------------------------------


def select_leaves(params: PyTree, subset: Subset) -> tuple[int, ...]:
    """Leaf indices (flattening order) of the subset: "all", "last_layer" (the leaves of the
    module holding the last leaf, e.g. `layers.2.weight` and `layers.2.bias`), a path glob,
    or a list of `by_path` selectors (globs, module types, predicates)."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    paths = [path_to_str(p) for p, _ in flat]
    if subset == "all":
        return tuple(range(len(flat)))
    if subset == "last_layer":
        owner = paths[-1].rpartition(".")[0]
        return tuple(i for i, p in enumerate(paths) if p.rpartition(".")[0] == owner)
    selectors = [subset] if isinstance(subset, str) or not isinstance(subset, Sequence) else subset
    chosen = tuple(
        i
        for i, (key_path, leaf) in enumerate(flat)
        if any(selects(s, params, key_path, leaf) for s in selectors)
    )
    if not chosen:
        raise ValueError(
            f"subset {subset!r} matches no parameter; use 'all', 'last_layer', a path glob or a "
            f"list of by_path selectors; parameter paths are {paths}"
        )
    return chosen


def _unravel(theta: jax.Array, shapes: tuple[tuple[int, ...], ...]) -> list[jax.Array]:
    """Flat (d,) vector -> leaves of the given shapes (row-major, in order)."""
    sizes = [math.prod(s) for s in shapes]
    cuts = np.cumsum(sizes)[:-1].tolist()
    return [part.reshape(s) for part, s in zip(jnp.split(theta, cuts), shapes)]


def _with_subset(
    params: PyTree, selected: tuple[int, ...], theta: jax.Array
) -> PyTree:  # params with the subset's leaves read from theta (d,)
    leaves, treedef = jax.tree.flatten(params)
    shapes = tuple(tuple(leaves[i].shape) for i in selected)
    for i, value in zip(selected, _unravel(theta, shapes)):
        leaves[i] = value.astype(leaves[i].dtype)
    return jax.tree.unflatten(treedef, leaves)


def _subset_vector(params: PyTree, selected: tuple[int, ...]) -> np.ndarray:  # (d,) float64
    leaves = jax.tree.leaves(params)
    return np.concatenate([np.asarray(leaves[i], np.float64).ravel() for i in selected])


# --- the GGN ----------------------------------------------------------------------------------


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
    theta = jnp.asarray(_subset_vector_traced(params, selected))

    def outputs(t, xi):
        return combine_params(_with_subset(params, selected, t), static)(xi).astype(jnp.float32)

    f = jax.vmap(lambda xi: outputs(theta, xi))(x)
    return f, jax.vmap(jax.jacrev(outputs), in_axes=(None, 0))(theta, x)


def _subset_vector_traced(params: PyTree, selected: tuple[int, ...]) -> jax.Array:
    leaves = jax.tree.leaves(params)
    return jnp.concatenate([leaves[i].ravel().astype(jnp.float32) for i in selected])


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


# --- the prior's precision ---------------------------------------------------------------------


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


# --- curvature structures (untempered posterior precisions, float64) ---------------------------


class Block(Protocol):
    """A Gaussian precision P over some entries of the subset vector."""

    def log_det(self) -> float: ...  # log det P

    def variances(self) -> np.ndarray: ...  # (b,) diag P^-1

    def whiten_inverse(self, z: np.ndarray) -> np.ndarray: ...  # (s, b): z ~ N(0, I) -> N(0, P^-1)

    def quad(self, jac: np.ndarray) -> np.ndarray: ...  # (m, k, b) -> J P^-1 J^T (m, k, k)

    def ggn_eigenvalues(self) -> np.ndarray: ...  # (b,) of the GGN part (for prior tuning)


@dataclass(frozen=True)
class FullBlock:
    """Dense P = ggn + prior (b, b) with its Cholesky factor."""

    ggn: np.ndarray
    prior: np.ndarray

    @functools.cached_property
    def chol(self) -> np.ndarray:
        return np.linalg.cholesky(self.ggn + self.prior)

    def log_det(self) -> float:
        return float(2 * np.sum(np.log(np.diag(self.chol))))

    def _solve_lower(self, b: np.ndarray) -> np.ndarray:
        return np.linalg.solve(self.chol, b)

    def variances(self) -> np.ndarray:
        inv_chol = self._solve_lower(np.eye(len(self.chol)))
        return np.sum(inv_chol**2, axis=0)

    def whiten_inverse(self, z: np.ndarray) -> np.ndarray:
        return np.linalg.solve(self.chol.T, z.T).T

    def quad(self, jac: np.ndarray) -> np.ndarray:
        v = self._solve_lower(jac.reshape(-1, jac.shape[-1]).T)  # (b, m k)
        m, k = jac.shape[:2]
        v = v.T.reshape(m, k, -1)
        return np.einsum("mkb,mlb->mkl", v, v)

    def ggn_eigenvalues(self) -> np.ndarray:
        return np.linalg.eigvalsh(self.ggn)


@dataclass(frozen=True)
class DiagBlock:
    """Diagonal P = ggn + prior, both (b,)."""

    ggn: np.ndarray
    prior: np.ndarray

    def log_det(self) -> float:
        return float(np.sum(np.log(self.ggn + self.prior)))

    def variances(self) -> np.ndarray:
        return 1.0 / (self.ggn + self.prior)

    def whiten_inverse(self, z: np.ndarray) -> np.ndarray:
        return z * np.sqrt(self.variances())

    def quad(self, jac: np.ndarray) -> np.ndarray:
        return np.einsum("mkb,mlb->mkl", jac * self.variances(), jac)

    def ggn_eigenvalues(self) -> np.ndarray:
        return self.ggn


@dataclass(frozen=True)
class KronBlock:
    """P = G kron A + I kron R over M = [W | b] (out, in') row-major (`order` maps the block's
    entries, weight then bias, to that layout). A = S~ diag(alpha) S~^T after whitening by
    R = S S^T, G = Q_G diag(g) Q_G^T: P^-1 = (Q_G kron B) diag(1 / (g alpha + 1)) (.)^T with
    B = S^-T Q_A (see the module docstring)."""

    g: np.ndarray  # (out, out) G factor: sum_i J_s^T Lambda J_s
    a: np.ndarray  # (in', in') A factor: mean_i a a^T
    r: np.ndarray  # (in', in') a row's prior precision
    order: np.ndarray  # (out * in',) position in the block of each entry of vec(M)

    @functools.cached_property
    def _parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """-> (Q_G, B, g eigenvalues (out,), alpha (in',))."""
        s = np.linalg.cholesky(self.r)
        s_inv = np.linalg.inv(s)
        alpha, q_a = np.linalg.eigh(s_inv @ self.a @ s_inv.T)
        g, q_g = np.linalg.eigh(self.g)
        return q_g, s_inv.T @ q_a, np.clip(g, 0, None), np.clip(alpha, 0, None)

    def _eig(self) -> np.ndarray:  # (out, in') eigenvalues of the whitened P
        _, _, g, alpha = self._parts
        return np.outer(g, alpha) + 1.0

    def log_det(self) -> float:
        log_det_r = np.linalg.slogdet(self.r)[1]
        return float(len(self.g) * log_det_r + np.sum(np.log(self._eig())))

    def _to_block(self, matrix: np.ndarray) -> np.ndarray:  # (..., out, in') -> (..., b)
        out = np.empty((*matrix.shape[:-2], self.order.size))
        out[..., self.order] = matrix.reshape(*matrix.shape[:-2], -1)
        return out

    def _to_matrix(self, v: np.ndarray) -> np.ndarray:  # (..., b) -> (..., out, in')
        return v[..., self.order].reshape(*v.shape[:-1], *self.g.shape[:1], len(self.a))

    def variances(self) -> np.ndarray:
        q_g, b, _, _ = self._parts
        return self._to_block((q_g**2) @ (1.0 / self._eig()) @ (b**2).T)

    def whiten_inverse(self, z: np.ndarray) -> np.ndarray:
        q_g, b, _, _ = self._parts
        scaled = self._to_matrix(z) / np.sqrt(self._eig())
        return self._to_block(q_g @ scaled @ b.T)

    def quad(self, jac: np.ndarray) -> np.ndarray:
        q_g, b, _, _ = self._parts
        v = q_g.T @ self._to_matrix(jac) @ b  # (m, k, out, in')
        return np.einsum("mkoi,mloi->mkl", v / self._eig(), v)

    def ggn_eigenvalues(self) -> np.ndarray:
        return np.outer(np.linalg.eigvalsh(self.g), np.linalg.eigvalsh(self.a)).ravel()


@dataclass(frozen=True)
class Curvature:
    """A block-diagonal posterior precision over the subset vector (d,): each block with the
    positions it covers."""

    blocks: tuple[tuple[np.ndarray, Block], ...]
    dim: int

    def log_det(self) -> float:
        return sum(block.log_det() for _, block in self.blocks)

    def variances(self) -> np.ndarray:  # (d,)
        out = np.zeros(self.dim)
        for at, block in self.blocks:
            out[at] = block.variances()
        return out

    def whiten_inverse(self, z: np.ndarray) -> np.ndarray:  # (s, d) -> draws of N(0, P^-1)
        out = np.zeros_like(z)
        for at, block in self.blocks:
            out[:, at] = block.whiten_inverse(z[:, at])
        return out

    def quad(self, jac: np.ndarray) -> np.ndarray:  # (m, k, d) -> (m, k, k)
        return sum(block.quad(jac[..., at]) for at, block in self.blocks)

    def ggn_eigenvalues(self) -> np.ndarray:  # (d,)
        return np.concatenate([block.ggn_eigenvalues() for _, block in self.blocks])
