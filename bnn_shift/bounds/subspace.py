"""Subspace parametrisation θ = θ₀ + P·w with a random projector P (REF 3.1).

P (D, d) is regenerated from an integer seed, so it is part of the prior and costs no bits.
Every projector is a linear operator with `matvec` (d,) -> (D,) and `rmatvec` (D,) -> (d,);
none of them holds a dense D×d matrix (`materialize` builds one, for tests on small sizes).
Columns have unit norm in expectation (exactly, for the QR form), so learning rates carry over
between projectors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from bnn_shift.models.params import combine_params, partition_params
from bnn_shift.typing import PyTree

DEFAULT_SEED = 137  # the reference code's projector seed
CHUNK_ELEMENTS = 1 << 22  # entries of P generated at once by the dense projector (16 MB)


class Projector(eqx.Module):
    """A random D×d linear map from subspace coordinates to parameter offsets."""

    D: int = eqx.field(static=True)
    d: int = eqx.field(static=True)
    seed: int = eqx.field(static=True)

    def matvec(self, w: jax.Array) -> jax.Array:  # (d,) -> (D,)
        raise NotImplementedError

    def rmatvec(self, v: jax.Array) -> jax.Array:  # (D,) -> (d,)
        raise NotImplementedError

    def materialize(self) -> jax.Array:  # (D, d)
        """The dense matrix, column by column: for tests and small sizes only."""
        return jax.vmap(self.matvec, in_axes=1, out_axes=1)(jnp.eye(self.d, dtype=jnp.float32))


def _check_dims(D: int, d: int) -> None:
    if not (isinstance(D, int) and isinstance(d, int)) or D < 1 or d < 1:
        raise ValueError(f"projector sizes must be positive integers, got D={D}, d={d}")
    if d > D:
        raise ValueError(f"the subspace dimension d={d} exceeds the parameter count D={D}")


# ---------------------------------------------------------------- dense, regenerated per chunk
def _dense_chunk(seed: int, d: int, rows: int, D: int, c: jax.Array) -> jax.Array:  # (rows, d)
    key = jax.random.fold_in(jax.random.key(seed), c)
    return jax.random.normal(key, (rows, d), jnp.float32) / math.sqrt(D)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _dense_matvec(seed: int, D: int, d: int, rows: int, w: jax.Array) -> jax.Array:
    n_chunks = -(-D // rows)
    out = jax.lax.map(lambda c: _dense_chunk(seed, d, rows, D, c) @ w, jnp.arange(n_chunks))
    return out.reshape(-1)[:D]


def _dense_rmatvec(seed: int, D: int, d: int, rows: int, v: jax.Array) -> jax.Array:
    n_chunks = -(-D // rows)
    v = jnp.pad(v, (0, n_chunks * rows - D)).reshape(n_chunks, rows)

    def add(total, c):
        return total + _dense_chunk(seed, d, rows, D, c).T @ v[c], None

    return jax.lax.scan(add, jnp.zeros(d, v.dtype), jnp.arange(n_chunks))[0]


_dense_matvec.defvjp(
    lambda seed, D, d, rows, w: (_dense_matvec(seed, D, d, rows, w), None),
    lambda seed, D, d, rows, _, g: (_dense_rmatvec(seed, D, d, rows, g),),
)


class DenseProjector(Projector):
    """Entries N(0, 1/D), generated chunk by chunk from the seed in both passes (O(d) memory
    per row; the backward pass regenerates the chunks instead of storing them)."""

    rows: int = eqx.field(static=True)

    def __init__(self, D: int, d: int, seed: int = DEFAULT_SEED):
        _check_dims(D, d)
        self.D, self.d, self.seed = D, d, seed
        self.rows = max(1, min(D, CHUNK_ELEMENTS // d))

    def matvec(self, w: jax.Array) -> jax.Array:
        return _dense_matvec(self.seed, self.D, self.d, self.rows, w)

    def rmatvec(self, v: jax.Array) -> jax.Array:
        return _dense_rmatvec(self.seed, self.D, self.d, self.rows, v)


# ---------------------------------------------------------------------------------- sparse
class SparseProjector(Projector):
    """Density ≈ 1/√D, entries ±D^(-1/4): each column has s = round(√D) nonzeros at rows drawn
    uniformly (with replacement; a repeated row adds up), so a column has unit norm on average.
    Holds the d·s row indices and signs, never a dense matrix."""

    rows: jax.Array  # (d, s) int32
    signs: jax.Array  # (d, s) float32, ±D^(-1/4)

    def __init__(self, D: int, d: int, seed: int = DEFAULT_SEED):
        _check_dims(D, d)
        self.D, self.d, self.seed = D, d, seed
        s = max(1, round(math.sqrt(D)))
        k_rows, k_signs = jax.random.split(jax.random.key(seed))
        self.rows = jax.random.randint(k_rows, (d, s), 0, D, jnp.int32)
        sign = jax.random.rademacher(k_signs, (d, s), jnp.float32)
        self.signs = sign * D ** (-0.25)

    def matvec(self, w: jax.Array) -> jax.Array:
        values = (self.signs * w[:, None]).reshape(-1)
        return jnp.zeros(self.D, w.dtype).at[self.rows.reshape(-1)].add(values)

    def rmatvec(self, v: jax.Array) -> jax.Array:
        return jnp.sum(v[self.rows] * self.signs, axis=1)


# ------------------------------------------------------------------------------- Kronecker
def _permutation(seed: int, D: int) -> tuple[jax.Array, jax.Array]:
    perm = jax.random.permutation(jax.random.fold_in(jax.random.key(seed), 7), D)
    return perm.astype(jnp.int32), jnp.argsort(perm).astype(jnp.int32)


class KroneckerSumProjector(Projector):
    """Order-2 Kronecker sum: the first k² = ⌊√D⌋² rows are vec((R₁w)1ᵀ + 1(R₂w)ᵀ)/√(2k) with
    R_i (k, d) entries N(0, 1/k); the D - k² leftover rows are dense N(0, 1/D); rows permuted."""

    R1: jax.Array  # (k, d)
    R2: jax.Array  # (k, d)
    extra: jax.Array  # (D - k², d)
    perm: jax.Array  # (D,)
    inv_perm: jax.Array  # (D,)

    def __init__(self, D: int, d: int, seed: int = DEFAULT_SEED):
        _check_dims(D, d)
        self.D, self.d, self.seed = D, d, seed
        k = math.isqrt(D)
        k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
        self.R1 = jax.random.normal(k1, (k, d), jnp.float32) / math.sqrt(k)
        self.R2 = jax.random.normal(k2, (k, d), jnp.float32) / math.sqrt(k)
        self.extra = jax.random.normal(k3, (D - k * k, d), jnp.float32) / math.sqrt(D)
        self.perm, self.inv_perm = _permutation(seed, D)

    def matvec(self, w: jax.Array) -> jax.Array:
        k = self.R1.shape[0]
        a, b = self.R1 @ w, self.R2 @ w  # (k,), (k,)
        block = (a[:, None] + b[None, :]).reshape(-1) / math.sqrt(2 * k)
        return jnp.concatenate([block, self.extra @ w])[self.perm]

    def rmatvec(self, v: jax.Array) -> jax.Array:
        k = self.R1.shape[0]
        u = v[self.inv_perm]
        block = u[: k * k].reshape(k, k) / math.sqrt(2 * k)
        return self.R1.T @ block.sum(1) + self.R2.T @ block.sum(0) + self.extra.T @ u[k * k :]


def _kron_sizes(D: int, d: int) -> tuple[int, int]:
    """(k, m): R₁⊗R₂ is k²×m² and the direct-sum block (D-k²)×(d-m²) has at least as many rows
    as columns (so the QR form is orthonormal). Since d <= D, m <= k holds after the shrink."""
    k, m = math.isqrt(D), math.isqrt(d)
    if D - k * k < d - m * m:
        k -= 1  # frees 2k-1 >= 2m >= d-m² rows
    return k, m


def _orthonormal(key: jax.Array, shape: tuple[int, int]) -> jax.Array:
    q, r = jnp.linalg.qr(jax.random.normal(key, shape, jnp.float32))
    return q * jnp.sign(jnp.diagonal(r))  # Haar-distributed orthonormal columns


class KroneckerProjector(Projector):
    """P = Perm·((R₁⊗R₂) ⊕ R_extra), R_i (k, m) with k = ⌊√D⌋, m = ⌊√d⌋; the direct sum puts the
    d - m² leftover coordinates on the D - k² leftover rows. `orthonormal=True` orthonormalises
    every factor by QR, so PᵀP = I exactly; otherwise entries are Gaussian with unit expected
    column norm. Memory O(√D·√d + (D - k²)(d - m²))."""

    R1: jax.Array  # (k, m)
    R2: jax.Array  # (k, m)
    extra: jax.Array  # (D - k², d - m²)
    perm: jax.Array  # (D,)
    inv_perm: jax.Array  # (D,)
    orthonormal: bool = eqx.field(static=True)

    def __init__(self, D: int, d: int, seed: int = DEFAULT_SEED, orthonormal: bool = True):
        _check_dims(D, d)
        self.D, self.d, self.seed, self.orthonormal = D, d, seed, orthonormal
        k, m = _kron_sizes(D, d)
        k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
        shapes = ((k, m), (k, m), (D - k * k, d - m * m))
        if orthonormal:
            factors = [_orthonormal(key, s) for key, s in zip((k1, k2, k3), shapes)]
        else:
            factors = [
                jax.random.normal(key, s, jnp.float32) / math.sqrt(max(s[0], 1))
                for key, s in zip((k1, k2, k3), shapes)
            ]
        self.R1, self.R2, self.extra = factors
        self.perm, self.inv_perm = _permutation(seed, D)

    def matvec(self, w: jax.Array) -> jax.Array:
        m = self.R1.shape[1]
        W = w[: m * m].reshape(m, m)
        block = (self.R1 @ W @ self.R2.T).reshape(-1)  # (R₁⊗R₂)·vec(W), row-major vec
        return jnp.concatenate([block, self.extra @ w[m * m :]])[self.perm]

    def rmatvec(self, v: jax.Array) -> jax.Array:
        k, _ = self.R1.shape
        u = v[self.inv_perm]
        block = self.R1.T @ u[: k * k].reshape(k, k) @ self.R2
        return jnp.concatenate([block.reshape(-1), self.extra.T @ u[k * k :]])


PROJECTORS: dict[str, Callable[..., Projector]] = {
    "dense": DenseProjector,
    "sparse": SparseProjector,
    "kron-sum": KroneckerSumProjector,
    "kron": partial(KroneckerProjector, orthonormal=False),
    "kron-qr": KroneckerProjector,
}


def make_projector(kind: str, D: int, d: int, seed: int = DEFAULT_SEED) -> Projector:
    """The named projector: dense, sparse, kron-sum, kron or kron-qr (Kronecker + QR)."""
    if kind not in PROJECTORS:
        raise ValueError(f"unknown projector {kind!r}; choose from {', '.join(PROJECTORS)}")
    return PROJECTORS[kind](D, d, seed)


@dataclass(frozen=True)
class Subspace:
    """A model restricted to θ₀ + P·w: `params(w)` / `model(w)` for w (d,)."""

    theta0: jax.Array  # (D,)
    projector: Projector
    unravel: Callable[[jax.Array], PyTree]
    static: PyTree

    @property
    def n_params(self) -> int:
        return self.projector.D

    @property
    def dim(self) -> int:
        return self.projector.d

    def params(self, w: jax.Array) -> PyTree:
        return self.unravel(self.theta0 + self.projector.matvec(w))

    def model(self, w: jax.Array) -> PyTree:
        return combine_params(self.params(w), self.static)


def make_subspace(
    model: PyTree, d: int, projector: str = "kron-qr", seed: int = DEFAULT_SEED
) -> Subspace:
    """The subspace of dimension d around the parameters of `model` (any equinox model)."""
    params, static = partition_params(model)
    theta0, unravel = ravel_pytree(params)
    if theta0.dtype != jnp.float32:
        theta0 = theta0.astype(jnp.float32)
    return Subspace(theta0, make_projector(projector, int(theta0.size), d, seed), unravel, static)
