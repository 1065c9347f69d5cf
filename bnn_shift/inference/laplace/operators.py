"""Device-side views of a curvature block, as equinox modules (arrays traced, so one compiled
program serves any approximation of the same shapes):

- the covariance P^-1 for the matrix-free linearised predictive (float32): diag and dense
  blocks applied to vectors, each reading and writing its own entries of the subset vector
  (`index`); KFAC layers as a quadratic form in their layer-wise Jacobian factors;
- log det(GGN + prior scaled by c) as a function of per-group precision multipliers c, for
  tuning prior scales by the evidence with the GGN fixed (float64 under `jax.enable_x64`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp


class DiagCovariance(eqx.Module):
    """P^-1 = diag(var) over the entries `index`."""

    index: jax.Array  # (b,) positions in the subset vector
    var: jax.Array  # (b,)

    def __call__(self, u: jax.Array) -> jax.Array:  # (d,) -> (b,)
        return u[self.index] * self.var


class DenseCovariance(eqx.Module):
    """P^-1 dense (b, b) over the entries `index` (small subsets only)."""

    index: jax.Array  # (b,)
    cov: jax.Array  # (b, b)

    def __call__(self, u: jax.Array) -> jax.Array:  # (d,) -> (b,)
        return self.cov @ u[self.index]


class KronCovariance(eqx.Module):
    """A KFAC layer's J P^-1 J^T from its Kronecker factors: P^-1 = (Q_G kron B) diag(inv_eig)
    (Q_G kron B)^T over M = [W | b] (out, in') (see `KronBlock`), and the Jacobian of output c
    by M, sum_t g_ct a~_t^T (g: the Jacobian by the layer's outputs at position t, a~: the rows
    the weight multiplies), so (Q_G kron B)^T takes it to sum_t (Q_G^T g_ct)(B^T a~_t)^T."""

    q_g: jax.Array  # (out, out)
    b: jax.Array  # (in', in')
    inv_eig: jax.Array  # (out, in')

    def quad(self, jac: jax.Array, rows: jax.Array) -> jax.Array:  # (k, out, T), (in', T)
        g_hat = jnp.einsum("po,kpt->kot", self.q_g, jac)  # (k, out, T)
        a_hat = self.b.T @ rows  # (in', T)

        def row(g_c):  # (out, T) -> row c of the (k, k) form, one (out, in') matrix at a time
            z = ((g_c @ a_hat.T) * self.inv_eig) @ a_hat  # (out, T)
            return jnp.einsum("kot,ot->k", g_hat, z)

        return jax.lax.map(row, g_hat)


class Covariance(eqx.Module):
    """P^-1 of a block-diagonal curvature for the linearised predictive: diag and dense blocks
    as an operator on subset vectors (d,) (`__call__`, zero on the KFAC layers' entries), KFAC
    layers through their factors (`kron`, one per `layers` entry)."""

    parts: tuple[DiagCovariance | DenseCovariance, ...]
    kron: tuple[KronCovariance, ...]
    layers: tuple = eqx.field(static=True)  # (KronLayer, ...)

    def __call__(self, u: jax.Array) -> jax.Array:  # (d,) -> (d,)
        out = jnp.zeros_like(u)
        for part in self.parts:
            out = out.at[part.index].set(part(u))
        return out


class DiagLogDet(eqx.Module):
    """log det of diag(ggn + c[group] * prior)."""

    ggn: jax.Array  # (b,)
    prior: jax.Array  # (b,)
    group: jax.Array  # (b,) int: each entry's group

    def __call__(self, c: jax.Array) -> jax.Array:  # (n_groups,) -> ()
        return jnp.sum(jnp.log(self.ggn + c[self.group] * self.prior))


class EigLogDet(eqx.Module):
    """log det of S (H~ + c I) S^T = const + sum_j log(eig_j + c[group]): one group's block
    whitened by its prior, P0 = S S^T (const = log det P0), H~ = S^-1 H S^-T with eigenvalues
    eig (full: H~ itself; kron: G kron A~, whose eigenvalues are g_i alpha_j)."""

    eig: jax.Array  # (b,)
    const: jax.Array  # ()
    group: int = eqx.field(static=True)

    def __call__(self, c: jax.Array) -> jax.Array:
        return self.const + jnp.sum(jnp.log(self.eig + c[self.group]))


class DenseLogDet(eqx.Module):
    """log det(ggn + D prior D), D = diag(sqrt(c[group])), by Cholesky (a full block whose
    entries span several groups; the prior is block diagonal by leaf, so D prior D scales each
    leaf's precision by its group's c)."""

    ggn: jax.Array  # (b, b)
    prior: jax.Array  # (b, b)
    group: jax.Array  # (b,) int

    def __call__(self, c: jax.Array) -> jax.Array:
        root = jnp.sqrt(c[self.group])
        chol = jnp.linalg.cholesky(self.ggn + root[:, None] * self.prior * root[None, :])
        return 2 * jnp.sum(jnp.log(jnp.diag(chol)))
