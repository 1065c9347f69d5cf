"""ExpNorm prior: density proportional to exp(-wd/2 * ||theta||_2^p) over all parameters jointly.

p = 2 is `Gaussian(scale)`. For p != 2 the density depends on the total norm only and does not
factorise, so it is normalised and sampled in polar form: uniform direction times a radius r with
r^p ~ Gamma(d/p, rate=wd/2), d the total number of parameters it is given.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from bnn_shift.priors.base import Prior, leaves_of
from bnn_shift.typing import PyTree


def _pow_half(sq: jax.Array, p: float) -> jax.Array:
    """sq^(p/2) with a finite (zero) gradient at sq = 0."""
    positive = sq > 0
    safe = jnp.where(positive, sq, 1.0)
    return jnp.where(positive, safe ** (0.5 * p), 0.0)


class ExpNorm(Prior):
    """log p(theta) = -wd/2 * ||theta||^p - log Z(d) with wd = 1/scale^2, ||.|| over all leaves.

    `dim` (optional) fixes the total parameter count d: it is checked against the parameters and
    needed by `trajectory_scale` when p != 2, because the per-coordinate spread then depends on d.
    """

    p: float = eqx.field(static=True)
    std: float = eqx.field(static=True)
    dim: int | None = eqx.field(static=True)

    def __init__(self, p: float, scale: float, dim: int | None = None):
        if not (math.isfinite(p) and p > 0):
            raise ValueError(f"ExpNorm power p must be finite and > 0 (p = 2 is Gaussian), got {p}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"ExpNorm scale must be a finite positive number, got {scale}")
        if dim is not None and not (isinstance(dim, int) and dim > 0):
            raise ValueError(
                f"ExpNorm dim must be a positive int (total parameter count), got {dim}"
            )
        self.p = float(p)
        self.std = float(scale)
        self.dim = dim

    @property
    def rate(self) -> float:
        """c = wd/2: the density is exp(-c * r^p) in the radius r = ||theta||."""
        return 0.5 / self.std**2

    def log_normaliser(self, d: int) -> float:
        """log Z = log(2 pi^(d/2)/Gamma(d/2)) + lgamma(d/p) - log p - (d/p) log c, in float64."""
        sphere = math.log(2.0) + 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d)
        return (
            sphere + math.lgamma(d / self.p) - math.log(self.p) - d / self.p * math.log(self.rate)
        )

    def coordinate_std(self, d: int) -> float:
        """sqrt(E||theta||^2 / d), from E r^2 = c^(-2/p) Gamma((d+2)/p) / Gamma(d/p)."""
        p = self.p
        log_r2 = math.lgamma((d + 2) / p) - math.lgamma(d / p) - 2 / p * math.log(self.rate)
        return math.sqrt(math.exp(log_r2) / d)

    @property
    def scale(self) -> float:
        """The scale setting, wd = 1/scale^2."""
        return self.std

    @property
    def trajectory_scale(self) -> float:
        """Per-coordinate rms standard deviation (= scale for p = 2; needs `dim` otherwise)."""
        if self.p == 2:
            return self.std
        if self.dim is None:
            raise ValueError(
                f"ExpNorm(p={self.p:g}) has a per-coordinate std that depends on the total "
                "parameter count d; construct it with dim=d or call coordinate_std(d)"
            )
        return self.coordinate_std(self.dim)

    def _leaves(self, params: PyTree) -> tuple[list[jax.Array], int]:
        leaves = leaves_of(params)
        d = sum(leaf.size for leaf in leaves)
        if self.dim is not None and d != self.dim:
            raise ValueError(
                f"ExpNorm was built with dim={self.dim} but was given {d} parameters; "
                "pass the parameters it was sized for or rebuild it with the right dim"
            )
        return leaves, d

    def log_prob(self, params: PyTree) -> jax.Array:
        leaves, d = self._leaves(params)
        sq = sum(jnp.sum(jnp.square(leaf)) for leaf in leaves)
        return -self.rate * _pow_half(sq, self.p) - self.log_normaliser(d)

    def log_prob_diff(self, new: PyTree, old: PyTree) -> jax.Array:
        # ||a||^p - ||b||^p = s_b^(p/2) * expm1(p/2 * log1p(ds/s_b)), ds = sum (a-b)(a+b): the small
        # change is never the difference of two large powers.
        a_leaves, _ = self._leaves(new)
        b_leaves, _ = self._leaves(old)
        ds = sum(jnp.sum((a - b) * (a + b)) for a, b in zip(a_leaves, b_leaves))
        sb = sum(jnp.sum(jnp.square(b)) for b in b_leaves)
        sa = sum(jnp.sum(jnp.square(a)) for a in a_leaves)
        safe_sb = jnp.where(sb > 0, sb, 1.0)
        rel = jnp.expm1(0.5 * self.p * jnp.log1p(ds / safe_sb))
        change = jnp.where(sb > 0, _pow_half(sb, self.p) * rel, _pow_half(sa, self.p))
        return -self.rate * change

    def sample(self, key: jax.Array, params_like: PyTree) -> PyTree:
        leaves, treedef = jax.tree.flatten(params_like)
        _, d = self._leaves(params_like)
        key_radius, *keys = jax.random.split(key, len(leaves) + 1)
        normals = [jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves)]
        norm = jnp.sqrt(sum(jnp.sum(jnp.square(z)) for z in normals))
        # r = (G / c)^(1/p), G ~ Gamma(d/p, 1), in log space: small d/p cannot underflow G to 0
        log_gamma = jax.random.loggamma(key_radius, d / self.p)
        radius = jnp.exp((log_gamma - math.log(self.rate)) / self.p)
        draws = [(z * (radius / norm)).astype(leaf.dtype) for z, leaf in zip(normals, leaves)]
        return jax.tree.unflatten(treedef, draws)

    def describe(self) -> str:
        wd = 1 / self.std**2
        text = f"ExpNorm(p={self.p:g}, scale={self.std:g})  [exp(-wd/2 ||theta||^p), wd {wd:g}"
        if self.dim is not None:
            text += f"; coordinate std {self.trajectory_scale:.4g} over d={self.dim}"
        return text + "]"
