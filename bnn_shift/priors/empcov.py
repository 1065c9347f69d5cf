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
from threadpoolctl import threadpool_limits

from bnn_shift.priors.base import MassFactor, Prior, check_finite_array, leaves_of
from bnn_shift.priors.patches import patch_covariance
from bnn_shift.typing import PyTree

# OpenBLAS/LAPACK results differ in the last bits with the thread count, and a chain amplifies
# them: one BLAS thread makes the prior the same on every machine.
one_blas_thread = threadpool_limits.wrap(limits=1, user_api="blas")


@one_blas_thread
def input_covariance(x: np.ndarray) -> np.ndarray:
    """(n, ...) inputs -> (d, d) covariance of the flattened inputs, float64, centred, /(n-1)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if len(x) < 2:
        raise ValueError(f"EmpCov needs at least 2 inputs to estimate a covariance, got {len(x)}")
    check_finite_array("EmpCov input data", x)
    centred = x - x.mean(axis=0)
    return centred.T @ centred / (len(x) - 1)


FORMS = ("paper", "product")


def prior_variances(
    lam: np.ndarray, *, form: str, alpha: float, eps: float, empcov_wd: float, wd: float
) -> np.ndarray:
    """Data variances (d,) along principal directions -> prior variances (d,), float64.

    paper:   alpha * lam + eps                         (covariance alpha*Sigma + eps*I)
    product: 1 / (empcov_wd / (lam + eps) + wd)        (precision empcov_wd*Sigma^-1 + wd*I,
             the reference code's EmpCov times its Gaussian)
    """
    if form == "paper":
        return alpha * lam + eps
    if form == "product":
        return 1.0 / (empcov_wd / (lam + eps) + wd)
    raise ValueError(f"unknown EmpCov form {form!r}; choose one of {FORMS}")


@one_blas_thread
def spectrum(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sigma (d, d) -> (eigvecs V (d, d), eigenvalues lam (d,) >= 0) in float64."""
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"covariance must be a square matrix, got shape {cov.shape}")
    check_finite_array("EmpCov covariance", cov)
    lam, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
    if lam.min() < -1e-8 * max(lam.max(), 1e-300):
        raise ValueError(f"covariance is not positive semi-definite (eigenvalue {lam.min():.3g})")
    return vecs, np.clip(lam, 0.0, None)  # clip round-off below zero


class EmpCov(Prior):
    """Gaussian prior whose covariance follows the input covariance Sigma, for a first layer.

    Dense weight (out, d): each row ~ N(0, C). Conv kernel (out, C_in, kh, kw): each filter,
    flattened, ~ N(0, C) with Sigma the covariance of the k x k x C_in input patches.
    C = alpha*Sigma + eps*I (form="paper") or (empcov_wd*Sigma^-1 + wd*I)^-1 (form="product",
    wd = 1/scale^2), built in float64 from the eigendecomposition of Sigma: exactly symmetric and
    positive definite. Build with `EmpCov.from_data` (dense) or `EmpCov.from_patches` (conv).
    """

    eigvecs: jax.Array  # (d, d) float32, columns are data principal directions
    prior_var: jax.Array  # (d,) prior variance along each principal direction
    data_var: jax.Array  # (d,) input variance along each principal direction
    event_shape: tuple[int, ...] = eqx.field(static=True)  # trailing parameter shape of one row
    alpha: float | None = eqx.field(static=True)  # paper form only
    eps: float = eqx.field(static=True)
    settings: str = eqx.field(static=True)
    log_det: float = eqx.field(static=True)  # log det of the prior covariance, from float64

    def __init__(
        self,
        cov: np.ndarray,
        *,
        alpha: float | None = None,
        eps: float = 1e-8,
        scale: float = 0.1,
        form: str = "paper",
        empcov_wd: float = 100.0,
        event_shape: tuple[int, ...] | None = None,
    ):
        """alpha=None (paper form) sets alpha = (scale^2 - eps)/mean(lam), so the mean prior
        variance per input direction equals scale^2, that of a `Gaussian(scale)` prior."""
        for name, value in (("eps", eps), ("scale", scale), ("empcov_wd", empcov_wd)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"EmpCov needs a finite {name} > 0, got {value}")
        vecs, lam = spectrum(cov)
        if alpha is None and form == "paper":
            if lam.mean() <= 0 or scale**2 <= eps:
                raise ValueError(
                    "cannot match EmpCov to scale: the inputs have no variance or eps >= scale^2; "
                    "pass alpha explicitly"
                )
            alpha = (scale**2 - eps) / lam.mean()
        if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"EmpCov needs a finite alpha > 0, got {alpha}")
        prior_var = prior_variances(
            lam, form=form, alpha=alpha or 0.0, eps=eps, empcov_wd=empcov_wd, wd=scale**-2
        )
        if not np.all(prior_var > 0):
            raise ValueError("EmpCov prior covariance is not positive definite; use eps > 0")
        event_shape = tuple(event_shape or (len(lam),))
        if math.prod(event_shape) != len(lam):
            raise ValueError(f"event_shape {event_shape} does not hold {len(lam)} entries")
        self.eigvecs = jnp.asarray(vecs, jnp.float32)
        self.prior_var = jnp.asarray(prior_var, jnp.float32)
        self.data_var = jnp.asarray(lam, jnp.float32)
        self.event_shape = event_shape
        self.alpha = None if form == "product" else float(alpha)
        self.eps = float(eps)
        self.settings = (
            f"alpha={alpha:.3g}, eps={eps:.1g}"
            if form == "paper"
            else f"product form, empcov_wd={empcov_wd:g}, wd={scale**-2:g}, eps={eps:.1g}"
        )
        self.log_det = float(np.sum(np.log(prior_var)))

    @classmethod
    def from_data(cls, x: np.ndarray, **kwargs) -> EmpCov:
        """For a dense first layer, from training inputs (n, ...) as the layer sees them
        (normalised; flattened here). Keyword arguments as for the constructor."""
        return cls(input_covariance(x), **kwargs)

    @classmethod
    def from_patches(
        cls, images: np.ndarray, kernel_size: int, padding: int = 0, stride: int = 1, **kwargs
    ) -> EmpCov:
        """For a first conv layer, from training images (n, H, W, C) with the layer's kernel
        size, padding and stride; Sigma is the covariance of all k x k x C patches."""
        cov = one_blas_thread(patch_covariance)(images, kernel_size, padding, stride)
        event = (np.shape(images)[3], kernel_size, kernel_size)
        return cls(cov, event_shape=event, **kwargs)

    @property
    def dim(self) -> int:
        return int(self.prior_var.shape[0])

    @property
    def scale(self) -> float:
        """Root mean prior variance over input directions: the `scale` it was matched to (paper
        form with alpha=None)."""
        return float(np.sqrt(np.mean(np.asarray(self.prior_var, np.float64))))

    def _rows(self, params: PyTree) -> list[jax.Array]:
        leaves = leaves_of(params)
        k = len(self.event_shape)
        for leaf in leaves:
            if leaf.ndim <= k or tuple(leaf.shape[-k:]) != self.event_shape:
                raise ValueError(
                    f"EmpCov was built for first-layer rows of shape {self.event_shape} but was "
                    f"given a parameter of shape {leaf.shape}; apply it to the first layer's "
                    f"weight (out, {', '.join(map(str, self.event_shape))})"
                )
        return leaves

    def _whiten(self, leaf: jax.Array) -> jax.Array:
        """(…, *event) weights -> (…, d) coordinates that are N(0, 1) under the prior."""
        rows = leaf.reshape(-1, self.dim)
        return (rows @ self.eigvecs) * jax.lax.rsqrt(self.prior_var)

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
            (
                (jax.random.normal(k, (leaf.size // self.dim, self.dim)) * jnp.sqrt(self.prior_var))
                @ self.eigvecs.T
            )
            .reshape(leaf.shape)
            .astype(leaf.dtype)
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
            inv_mass=jnp.asarray((vecs * rel_std**2) @ vecs.T, jnp.float32),
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
            f"EmpCov(d={self.dim}, {self.settings}): prior std "
            f"{prior_std[0]:.3g} along the top data direction, {prior_std[-1]:.3g} along the "
            f"lowest; {n_null} null directions"
        )
