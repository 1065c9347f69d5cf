"""Curvature structures: untempered posterior precisions P = GGN + prior (float64) over the
subset vector, dense (`FullBlock`), diagonal (`DiagBlock`) or KFAC (`KronBlock`), held
block-diagonally by `Curvature`; each gives its covariance as a device operator and, with the
GGN fixed, its log determinant under rescaled prior precisions (`operators`)."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import equinox as eqx
import numpy as np

from bnn_shift.inference.laplace.operators import (
    Covariance,
    DenseCovariance,
    DenseLogDet,
    DiagCovariance,
    DiagLogDet,
    EigLogDet,
    KronCovariance,
)


class Block(Protocol):
    """A Gaussian precision P over some entries of the subset vector."""

    def log_det(self) -> float: ...  # log det P

    def variances(self) -> np.ndarray: ...  # (b,) diag P^-1

    def whiten_inverse(self, z: np.ndarray) -> np.ndarray: ...  # (s, b): z ~ N(0, I) -> N(0, P^-1)

    def covariance(self, index: np.ndarray) -> eqx.Module: ...  # P^-1 on the entries `index`

    def log_det_scaled(self, group: np.ndarray) -> eqx.Module: ...  # c -> log det(GGN + c prior)

    def rescaled(self, c: np.ndarray) -> Block: ...  # its prior precision times c (b,)


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

    @functools.cached_property
    def _inv_chol(self) -> np.ndarray:  # L^-1, P^-1 = L^-T L^-1
        return np.linalg.solve(self.chol, np.eye(len(self.chol)))

    def variances(self) -> np.ndarray:
        return np.sum(self._inv_chol**2, axis=0)

    def whiten_inverse(self, z: np.ndarray) -> np.ndarray:
        return np.linalg.solve(self.chol.T, z.T).T

    def covariance(self, index: np.ndarray) -> DenseCovariance:
        cov = self._inv_chol.T @ self._inv_chol
        return DenseCovariance(index.astype(np.int32), cov.astype(np.float32))

    @functools.cached_property
    def _ggn_psd(self) -> np.ndarray:
        """The GGN with the negative eigenvalues its float32 sums can leave set to 0, so that
        GGN + c prior stays positive definite as c -> 0."""
        vals, vecs = np.linalg.eigh(self.ggn)
        return (vecs * np.clip(vals, 0, None)) @ vecs.T

    def log_det_scaled(self, group: np.ndarray) -> EigLogDet | DenseLogDet:
        """One group: the prior-whitened GGN's eigenvalues, once; several: Cholesky per call."""
        if np.any(group != group[0]):
            return DenseLogDet(self._ggn_psd, self.prior, group)
        s_inv = np.linalg.inv(np.linalg.cholesky(self.prior))
        eig = np.clip(np.linalg.eigvalsh(s_inv @ self._ggn_psd @ s_inv.T), 0, None)
        return EigLogDet(eig, np.asarray(np.linalg.slogdet(self.prior)[1]), int(group[0]))

    def rescaled(self, c: np.ndarray) -> FullBlock:
        """The prior precision times c (b,) per entry (D prior D, D = diag(sqrt c)), with the
        GGN made positive semi-definite."""
        root = np.sqrt(c)
        return FullBlock(self._ggn_psd, root[:, None] * self.prior * root[None, :])


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

    def covariance(self, index: np.ndarray) -> DiagCovariance:
        return DiagCovariance(index.astype(np.int32), self.variances().astype(np.float32))

    def log_det_scaled(self, group: np.ndarray) -> DiagLogDet:
        return DiagLogDet(np.clip(self.ggn, 0, None), self.prior, group)

    def rescaled(self, c: np.ndarray) -> DiagBlock:
        return DiagBlock(self.ggn, self.prior * c)


class KronLayer(NamedTuple):
    """A selected layer (`kron.LAYERS`): its key path and which of weight / bias are in the
    subset."""

    keys: tuple
    weight: bool
    bias: bool


@dataclass(frozen=True)
class KronBlock:
    """P = G kron A + I kron R over M = [W | b] (out, in') row-major (`order` maps the block's
    entries, weight then bias, to that layout). A = S~ diag(alpha) S~^T after whitening by
    R = S S^T, G = Q_G diag(g) Q_G^T: P^-1 = (Q_G kron B) diag(1 / (g alpha + 1)) (.)^T with
    B = S^-T Q_A (see the package docstring)."""

    g: np.ndarray  # (out, out) G factor: sum_i J_s^T Lambda J_s
    a: np.ndarray  # (in', in') A factor: mean_i a a^T
    r: np.ndarray  # (in', in') a row's prior precision
    order: np.ndarray  # (out * in',) position in the block of each entry of vec(M)
    layer: KronLayer  # the layer it covers (the linearised predictive taps it)

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

    def covariance(self, index: np.ndarray) -> KronCovariance:
        """Through the layer's factors (`KronCovariance`): `index` is not needed."""
        q_g, b, _, _ = self._parts
        return KronCovariance(*[m.astype(np.float32) for m in (q_g, b, 1.0 / self._eig())])

    def log_det_scaled(self, group: np.ndarray) -> EigLogDet:
        """P(c) = G kron A + c I kron R = (I kron S)(G kron A~ + c I)(I kron S^T): the whitened
        eigenvalues g_i alpha_j, once."""
        _, _, g, alpha = self._parts
        const = len(self.g) * np.linalg.slogdet(self.r)[1]
        return EigLogDet(np.outer(g, alpha).ravel(), np.asarray(const), int(self._shared(group)))

    def rescaled(self, c: np.ndarray) -> KronBlock:
        return dataclasses.replace(self, r=self.r * self._shared(c))

    @staticmethod
    def _shared(values: np.ndarray) -> np.generic:
        """The one value every entry has: a layer's weight and bias share the Kronecker
        factors, so they take one prior scale."""
        if np.any(values != values[0]):
            raise ValueError(
                "a KFAC block (a layer's weight with its bias) takes one prior scale: put the "
                "layer's leaves in one group (groups='layer' does), or use hessian 'diag' / 'full'"
            )
        return values[0]


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

    def covariance(self) -> Covariance:
        """P^-1 as a device operator (float32): diag and full blocks on subset vectors (d,),
        KFAC blocks by their layers."""
        parts = [block.covariance(at) for at, block in self.blocks]
        kron = [(block.layer, part) for (_, block), part in zip(self.blocks, parts)
                if isinstance(block, KronBlock)]  # fmt: skip
        return Covariance(
            tuple(p for p in parts if not isinstance(p, KronCovariance)),
            tuple(part for _, part in kron),
            tuple(layer for layer, _ in kron),
        )

    def log_det_scaled(self, group: np.ndarray) -> tuple[eqx.Module, ...]:
        """Per block, c (n_groups,) -> log det of its GGN + prior precision times c[group]
        (group (d,): each entry's group); they sum to log det P(c)."""
        return tuple(block.log_det_scaled(group[at]) for at, block in self.blocks)

    def rescaled(self, c: np.ndarray) -> Curvature:
        """The same GGN with the prior precision of each entry times c (d,)."""
        return Curvature(tuple((at, block.rescaled(c[at])) for at, block in self.blocks), self.dim)
