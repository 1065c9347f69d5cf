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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.inference.map import map_fit
from bnn_shift.inference.posterior import Posterior
from bnn_shift.inference.target import Target, make_target
from bnn_shift.models.params import combine_params, param_paths, partition_params, path_to_str
from bnn_shift.priors.base import Prior
from bnn_shift.priors.compose import Selector, selects
from bnn_shift.priors.empcov import EmpCov
from bnn_shift.priors.gaussian import Gaussian
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
    theta = _subset_vector_device(params, selected)

    def outputs(t, xi):
        return combine_params(_with_subset(params, selected, t), static)(xi).astype(jnp.float32)

    f = jax.vmap(lambda xi: outputs(theta, xi))(x)
    return f, jax.vmap(jax.jacrev(outputs), in_axes=(None, 0))(theta, x)


def _subset_vector_device(params: PyTree, selected: tuple[int, ...]) -> jax.Array:
    """The subset's leaves as one float32 vector (d,), on the device."""
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


# --- KFAC factors -------------------------------------------------------------------------------


class _Tap:
    """Stands in for an `eqx.nn.Linear` in one forward pass: adds a zero probe to its outputs
    (so d f / d probe is the Jacobian by the layer's outputs) and records its input."""

    def __init__(self, layer: eqx.nn.Linear, probe: jax.Array, seen: list):
        self.layer, self.probe, self.seen = layer, probe, seen

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        self.seen.append(x)
        return self.layer(x) + self.probe


def _node(root: PyTree, keys: tuple) -> Any:
    """The node of `root` at a jax key path."""
    for key in keys:
        if isinstance(key, jax.tree_util.GetAttrKey):
            root = getattr(root, key.name)
        elif isinstance(key, jax.tree_util.SequenceKey):
            root = root[key.idx]
        else:
            root = root[key.key]
    return root


def _replace_nodes(root: PyTree, paths: list[tuple], new: list) -> Any:
    """`root` with the nodes at the key paths replaced (the root itself for the path ())."""
    if () in paths:
        return new[paths.index(())]
    return eqx.tree_at(lambda m: [_node(m, keys) for keys in paths], root, new)


class KronLayer(NamedTuple):
    """A selected `eqx.nn.Linear`: its key path and which of weight / bias are in the subset."""

    keys: tuple
    weight: bool
    bias: bool


@eqx.filter_jit
def _kron_chunk(
    params: PyTree,
    static: PyTree,
    likelihood: Likelihood,
    layers: tuple[KronLayer, ...],
    x: jax.Array,
    y: jax.Array,
) -> list[tuple[jax.Array, jax.Array]]:
    """Per layer, (sum_i J_s^T Lambda_i J_s (out, out), sum_i a~ a~^T (in', in')) over a chunk,
    a~ = [a if weight, 1 if bias]."""
    model = combine_params(params, static)
    probes = [jnp.zeros(_node(model, layer.keys).out_features) for layer in layers]

    def tapped(probes, xi):
        seen = [[] for _ in layers]
        taps = [_Tap(_node(model, layer.keys), p, s) for layer, p, s in zip(layers, probes, seen)]
        f = _replace_nodes(model, [layer.keys for layer in layers], taps)(xi).astype(jnp.float32)
        if any(len(s) != 1 for s in seen):
            raise ValueError("hessian='kron' needs each selected Linear called once per example")
        return f, (f, [s[0] for s in seen])

    jac, (f, inputs) = jax.vmap(jax.jacrev(tapped, has_aux=True), in_axes=(None, 0))(probes, x)
    lam = _output_precisions(likelihood, f, y)
    out = []
    for layer, js, a in zip(layers, jac, inputs):
        parts = ([a.reshape(len(x), -1)] if layer.weight else []) + (
            [jnp.ones((len(x), 1))] if layer.bias else []
        )
        aug = jnp.concatenate(parts, axis=1)
        g = jnp.einsum("bko,bkl,blp->op", js, lam, js, precision="highest")
        out.append((g, jnp.einsum("bi,bj->ij", aug, aug, precision="highest")))
    return out


def kron_factors(
    params: PyTree,
    static: PyTree,
    likelihood: Likelihood,
    x: np.ndarray,
    y: np.ndarray,
    layers: tuple[KronLayer, ...],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer the KFAC factors (G (out, out) = sum_i J_s^T Lambda_i J_s, A (in', in') =
    mean_i a~ a~^T), float64, so that its GGN block is about G kron A."""
    sums = None
    width = sum(_node(params, layer.keys).weight.shape[0] for layer in layers)
    for xb, yb in _batches(x, y, _n_outputs(params, static, x) * (width + 1)):
        chunk = _kron_chunk(params, static, likelihood, layers, xb, yb)
        chunk = [(np.asarray(g, np.float64), np.asarray(a, np.float64)) for g, a in chunk]
        sums = (
            chunk if sums is None else [(g + cg, a + ca) for (g, a), (cg, ca) in zip(sums, chunk)]
        )
    return [(g, a / len(x)) for g, a in sums]


def _kron_layers(params: PyTree, selected: tuple[int, ...]) -> dict[KronLayer, list[int]]:
    """Selected leaves that are a 2-D weight or the bias of an `eqx.nn.Linear`, by layer ->
    their positions in `selected`."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    owners: dict[tuple, dict[str, int]] = {}
    for at, i in enumerate(selected):
        keys, leaf = flat[i]
        name = getattr(keys[-1], "name", None)
        if isinstance(_node(params, keys[:-1]), eqx.nn.Linear) and name in ("weight", "bias"):
            if name == "bias" or leaf.ndim == 2:
                owners.setdefault(keys[:-1], {})[name] = at
    return {
        KronLayer(keys, "weight" in parts, "bias" in parts): sorted(parts.values())
        for keys, parts in owners.items()
    }


# --- the approximation --------------------------------------------------------------------------


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
    subset_precision: float | None  # the subset's prior precision when one isotropic Gaussian
    settings: dict[str, Any]


def _sizes(params: PyTree, selected: tuple[int, ...]) -> list[int]:
    leaves = jax.tree.leaves(params)
    return [int(leaves[i].size) for i in selected]


def _positions(sizes: list[int], which: list[int]) -> np.ndarray:
    """Positions in the subset vector of the leaves `which` (indices into `sizes`)."""
    starts = np.concatenate([[0], np.cumsum(sizes)])
    return np.concatenate([np.arange(starts[j], starts[j + 1]) for j in which])


def _kron_block(
    layer: KronLayer,
    factors: tuple[np.ndarray, np.ndarray],
    rows: list[np.ndarray],
    out: int,
) -> KronBlock:
    """The layer's KFAC block: prior row precision blockdiag(R_weight, r_bias) over [w_o, b_o]."""
    in_w = len(factors[1]) - layer.bias
    r_parts = ([rows[0] if len(rows[0]) == in_w else rows[0][0, 0] * np.eye(in_w)]
               if layer.weight else []) + ([rows[-1]] if layer.bias else [])  # fmt: skip
    r = np.zeros((len(factors[1]),) * 2)
    at = 0
    for part in r_parts:
        r[at : at + len(part), at : at + len(part)] = part
        at += len(part)
    index = ([np.arange(out * in_w).reshape(out, in_w)] if layer.weight else []) + (
        [out * in_w * layer.weight + np.arange(out)[:, None]] if layer.bias else []
    )
    return KronBlock(factors[0], factors[1], r, np.concatenate(index, axis=1).ravel())


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


@eqx.filter_jit
def _loglik_sum(target: Target, params: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.sum(target.loglik(params, (x, y)))


def _isotropic_precision(rows: list[np.ndarray]) -> float | None:
    """The common precision of the subset's rows when all are one isotropic Gaussian's."""
    values = {float(r[0, 0]) for r in rows if len(r) == 1}
    return values.pop() if len(values) == 1 and all(len(r) == 1 for r in rows) else None


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
    when fit_map, else `model` is taken to be the MAP (any equinox model). See the module
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
    rows = [row_precisions(prior, params)[i] for i in selected]
    paths = param_paths(params)
    return LaplaceApprox(
        mean=jax.tree.map(np.asarray, params),
        static=target.static,
        likelihood=target.likelihood,
        selected=selected,
        curvature=curvature,
        temperature=target.temperature,
        log_joint=log_joint + float(prior.log_prob(params)),
        subset_precision=_isotropic_precision(rows),
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
    d, t = approx.curvature.dim, approx.temperature
    return (
        approx.log_joint / t
        + 0.5 * d * math.log(2 * math.pi)
        - 0.5 * approx.curvature.log_det()
        + 0.5 * d * math.log(t)
    )


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


def laplace(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    subset: Subset = "all",
    hessian: str = "full",
    likelihood: str | Likelihood = "categorical",
    temperature: float = 1.0,
    n_samples: int = 32,
    seed: int = 0,
    fit_map: bool = True,
    map_settings: dict[str, Any] | None = None,
) -> Posterior:
    """`fit_laplace`, then n_samples draws from q -> a "variational" `Posterior` with
    variational {"mean": MAP, "std": marginal sds (0 outside the subset)} and attrs method
    "laplace", subset, hessian and log_marginal_likelihood."""
    approx = fit_laplace(
        model, prior, x, y, subset=subset, hessian=hessian, likelihood=likelihood,
        temperature=temperature, fit_map=fit_map, map_settings=map_settings,
    )  # fmt: skip
    return Posterior(
        static=approx.static,
        draws=sample_laplace(approx, n_samples, seed),
        attrs=approx.settings
        | {
            "method": "laplace",
            "temperature": approx.temperature,
            "likelihood": approx.likelihood.describe(),
            "log_marginal_likelihood": log_marginal_likelihood(approx),
            "n_samples": n_samples,
            "seed": seed,
        },
        variational={"mean": approx.mean, "std": marginal_std(approx)},
        kind="variational",
    )


# --- prior scale by the evidence ---------------------------------------------------------------


class PriorScaleFit(NamedTuple):
    scale: float  # the tuned Gaussian prior sd of the subset
    log_marginal_likelihood: float  # the Laplace evidence at it (fixed MAP and curvature)
    history: np.ndarray  # (n_steps,) the evidence along the ascent


def tune_prior_scale(
    approx: LaplaceApprox, *, n_steps: int = 300, learning_rate: float = 0.05
) -> PriorScaleFit:
    """Adam ascent on s = log sigma of the Laplace evidence with a Gaussian(sigma) prior on the
    subset, at the fitted MAP theta* and GGN (not refitted: MacKay's fixed-mode evidence):

        L(s) = [log_joint_rest - |theta_s*|^2 / (2 sigma^2) - d log sigma - (d/2) log 2 pi] / T
               + (d/2) log 2 pi - 1/2 sum_j log(h_j + sigma^-2) + (d/2) log T,

    h_j the eigenvalues of the GGN's structure (exact for full and diag; for kron those of G
    kron A). Its stationary point solves d sigma^2 = |theta_s*|^2 + T sum_j 1 / (h_j +
    sigma^-2). Needs the subset's prior to be one isotropic Gaussian (L(s0) is then the
    approximation's own `log_marginal_likelihood`)."""
    if approx.subset_precision is None:
        raise ValueError(
            "tune_prior_scale needs one isotropic Gaussian prior over the subset; this "
            f"approximation's prior is {approx.settings['prior']}"
        )
    d, t = approx.curvature.dim, approx.temperature
    theta = _subset_vector(approx.mean, approx.selected)
    eig = np.clip(approx.curvature.ggn_eigenvalues(), 0, None)
    s0 = -0.5 * math.log(approx.subset_precision)
    prior_subset = -0.5 * theta @ theta * approx.subset_precision - d * s0
    rest = approx.log_joint - prior_subset + 0.5 * d * math.log(2 * math.pi)
    with jax.enable_x64(True):
        sq, h = jnp.asarray(theta @ theta), jnp.asarray(eig)

        def evidence(s):
            log_joint = rest - 0.5 * sq * jnp.exp(-2 * s) - d * s - 0.5 * d * math.log(2 * math.pi)
            log_det = jnp.sum(jnp.log(h + jnp.exp(-2 * s)))
            return log_joint / t + 0.5 * d * math.log(2 * math.pi * t) - 0.5 * log_det

        optimizer = optax.adam(learning_rate)
        s, state, history = jnp.asarray(s0), optimizer.init(jnp.asarray(s0)), []
        value_and_grad = jax.jit(jax.value_and_grad(evidence))
        for _ in range(n_steps):
            value, grad = value_and_grad(s)
            updates, state = optimizer.update(-grad, state)
            s, history = optax.apply_updates(s, updates), [*history, float(value)]
        return PriorScaleFit(float(jnp.exp(s)), float(evidence(s)), np.asarray(history))


# --- predictives ---------------------------------------------------------------------------------


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
