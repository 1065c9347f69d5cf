"""EmpCov: a Gaussian prior on a dense first layer whose covariance follows the input covariance.

Each row w (d,) of the first-layer weight (out, d) is drawn from N(0, alpha*Sigma + eps*I), with
Sigma the empirical covariance of the training inputs. Directions the training inputs never vary
in (dead pixels, linear dependencies) get prior variance eps, so posterior samples ignore them.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.priors.base import MassFactor, Prior, PyTree, check_finite_array, leaves_of


def input_covariance(x: np.ndarray) -> np.ndarray:
    """(n, ...) inputs -> (d, d) covariance of the flattened inputs, float64, centred, /(n-1)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if len(x) < 2:
        raise ValueError(f"EmpCov needs at least 2 inputs to estimate a covariance, got {len(x)}")
    check_finite_array("EmpCov input data", x)
    centred = x - x.mean(axis=0)
    return centred.T @ centred / (len(x) - 1)


def prior_spectrum(
    cov: np.ndarray, alpha: float, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sigma (d, d) -> (eigvecs V (d, d), data variances lam (d,), prior variances (d,)), float64.

    Prior covariance is V diag(alpha*lam + eps) V^T: exactly symmetric and positive definite.
    """
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"covariance must be a square matrix, got shape {cov.shape}")
    check_finite_array("EmpCov covariance", cov)
    lam, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
    lam = np.clip(lam, 0.0, None)  # round-off can leave tiny negative eigenvalues of a PSD matrix
    prior_var = alpha * lam + eps
    if not np.all(prior_var > 0):
        raise ValueError("EmpCov prior covariance is not positive definite; use eps > 0")
    return vecs, lam, prior_var


class EmpCov(Prior):
    """Rows of a (out, d) weight ~ N(0, alpha*Sigma + eps*I); build it with `EmpCov.from_data`."""

    eigvecs: jax.Array  # (d, d) float32, columns are data principal directions
    prior_var: jax.Array  # (d,) prior variance along each principal direction
    data_var: jax.Array  # (d,) input variance along each principal direction
    alpha: float = eqx.field(static=True)
    eps: float = eqx.field(static=True)
    log_det: float = eqx.field(static=True)  # log det of the prior covariance, from float64

    def __init__(self, cov: np.ndarray, *, alpha: float, eps: float = 1e-8):
        if not (math.isfinite(alpha) and alpha > 0 and math.isfinite(eps) and eps > 0):
            raise ValueError(f"EmpCov needs finite alpha > 0 and eps > 0, got {alpha=}, {eps=}")
        vecs, lam, prior_var = prior_spectrum(cov, alpha, eps)
        self.eigvecs = jnp.asarray(vecs, jnp.float32)
        self.prior_var = jnp.asarray(prior_var, jnp.float32)
        self.data_var = jnp.asarray(lam, jnp.float32)
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.log_det = float(np.sum(np.log(prior_var)))

    @classmethod
    def from_data(
        cls, x: np.ndarray, *, scale: float = 0.1, alpha: float | None = None, eps: float = 1e-8
    ) -> EmpCov:
        """Build from training inputs (n, ...) as the first layer sees them (normalised, flattened).

        With `alpha=None`, alpha = (scale^2 - eps)/mean(lam) so the average prior variance per input
        direction equals scale^2, the variance of a `Gaussian(scale)` prior.
        """
        cov = input_covariance(x)
        if alpha is None:
            mean_var = float(np.trace(cov)) / cov.shape[0]
            if mean_var <= 0 or scale**2 <= eps:
                raise ValueError(
                    "cannot match EmpCov to scale: the inputs have no variance or eps >= scale^2; "
                    "pass alpha explicitly"
                )
            alpha = (scale**2 - eps) / mean_var
        return cls(cov, alpha=alpha, eps=eps)

    @property
    def dim(self) -> int:
        return int(self.prior_var.shape[0])

    @property
    def scale(self) -> float:
        return float(np.sqrt(np.mean(np.asarray(self.prior_var, np.float64))))

    def _rows(self, params: PyTree) -> list[jax.Array]:
        leaves = leaves_of(params)
        for leaf in leaves:
            if leaf.ndim < 1 or leaf.shape[-1] != self.dim:
                raise ValueError(
                    f"EmpCov was built for inputs of dimension {self.dim} but was given a "
                    f"parameter of shape {leaf.shape}; apply it to the first dense layer's "
                    f"weight (out, {self.dim})"
                )
        return leaves

    def _whiten(self, leaf: jax.Array) -> jax.Array:
        """(…, d) weights -> (…, d) coordinates that are N(0, 1) under the prior."""
        return (leaf @ self.eigvecs) * jax.lax.rsqrt(self.prior_var)

    def log_prob(self, params: PyTree) -> jax.Array:
        total = 0.0
        for leaf in self._rows(params):
            n_rows = leaf.size // self.dim
            norm = -0.5 * n_rows * (self.dim * math.log(2 * math.pi) + self.log_det)
            total = total + norm - 0.5 * jnp.sum(self._whiten(leaf) ** 2)
        return total

    def log_prob_diff(self, new: PyTree, old: PyTree) -> jax.Array:
        terms = [
            jnp.sum((zn - zo) * (zn + zo))
            for zn, zo in (
                (self._whiten(a), self._whiten(b)) for a, b in zip(self._rows(new), self._rows(old))
            )
        ]
        return -0.5 * sum(terms)

    def sample(self, key: jax.Array, params_like: PyTree) -> PyTree:
        leaves, treedef = jax.tree.flatten(params_like)
        self._rows(params_like)
        keys = jax.random.split(key, len(leaves))
        draws = [
            ((jax.random.normal(k, leaf.shape) * jnp.sqrt(self.prior_var)) @ self.eigvecs.T).astype(
                leaf.dtype
            )
            for k, leaf in zip(keys, leaves)
        ]
        return jax.tree.unflatten(treedef, draws)

    def preconditioner(self, params_like: PyTree) -> list[MassFactor | None]:
        """Inverse mass = prior covariance / scale^2: HMC moves in coordinates where this prior is
        isotropic with std `scale`, so one step size suits its stiff and loose directions alike."""
        self._rows(params_like)
        vecs = np.asarray(self.eigvecs, np.float64)
        rel_std = np.sqrt(np.asarray(self.prior_var, np.float64)) / self.scale
        factor = MassFactor(
            sqrt_inv_mass=jnp.asarray((vecs * rel_std) @ vecs.T, jnp.float32),
            sqrt_mass=jnp.asarray((vecs / rel_std) @ vecs.T, jnp.float32),
        )
        return [factor] * len(jax.tree.leaves(params_like))

    def std_along_data_directions(self) -> tuple[np.ndarray, np.ndarray]:
        """-> (data std (d,), prior std (d,)) along the principal directions, largest first."""
        order = np.argsort(np.asarray(self.data_var))[::-1]
        return (
            np.sqrt(np.asarray(self.data_var, np.float64)[order]),
            np.sqrt(np.asarray(self.prior_var, np.float64)[order]),
        )

    def describe(self) -> str:
        data_std, prior_std = self.std_along_data_directions()
        n_null = int(np.sum(data_std**2 <= 1e-12))
        return (
            f"EmpCov(d={self.dim}, alpha={self.alpha:.3g}, eps={self.eps:.1g}): prior std "
            f"{prior_std[0]:.3g} along the top data direction, {prior_std[-1]:.3g} along the "
            f"lowest; {n_null} null directions"
        )
