"""Factorised Laplace prior with the variance of a Gaussian of the same `scale`."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from bnn_shift.priors.base import FactorisedPrior
from bnn_shift.typing import PyTree


class Laplace(FactorisedPrior):
    """theta_i ~ Laplace(0, b) iid with b = scale/sqrt(2), so Var theta_i = 2b^2 = scale^2.

    In the paper's weight-decay terms b = sqrt(1/(2 wd)) with wd = 1/scale^2.
    """

    std: float = eqx.field(static=True)

    def __init__(self, scale: float):
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(
                f"Laplace prior scale (its standard deviation) must be a finite positive number, "
                f"got {scale}"
            )
        self.std = float(scale)

    @property
    def scale(self) -> float:
        return self.std

    @property
    def b(self) -> float:
        """The Laplace scale parameter b = std/sqrt(2)."""
        return self.std / math.sqrt(2.0)

    def distribution(self) -> dist.Laplace:
        return dist.Laplace(0.0, self.b)

    def log_prob_diff(self, new: PyTree, old: PyTree) -> jax.Array:
        # -(|new| - |old|)/b per parameter before summing: no cancellation of two large totals.
        terms = jax.tree.map(lambda a, b: jnp.sum(jnp.abs(a) - jnp.abs(b)), new, old)
        return -sum(jax.tree.leaves(terms)) / self.b

    def describe(self) -> str:
        return f"Laplace(scale={self.std:g}, b={self.b:.4g})  [weight decay {1 / self.std**2:g}]"
