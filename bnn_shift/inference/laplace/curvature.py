"""Curvature structures: untempered posterior precisions P (float64) over the subset vector,
dense (`FullBlock`), diagonal (`DiagBlock`) or KFAC (`KronBlock`), held block-diagonally by
`Curvature`."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

import numpy as np


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
    B = S^-T Q_A (see the package docstring)."""

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
