"""Isotropic Gaussian prior N(0, scale^2 I) on every parameter it is given."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from bnn_shift.priors.base import FactorisedPrior
from bnn_shift.typing import PyTree


class Gaussian(FactorisedPrior):
    """theta ~ N(0, scale^2 I); `scale = 1/sqrt(wd)` in the paper's weight-decay terms."""

    std: float = eqx.field(static=True)

    def __init__(self, scale: float):
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"Gaussian prior scale must be a finite positive number, got {scale}")
        self.std = float(scale)

    @property
    def scale(self) -> float:
        return self.std

    def distribution(self) -> dist.Normal:
        return dist.Normal(0.0, self.std)

    def log_prob_diff(self, new: PyTree, old: PyTree) -> jax.Array:
        # -(new^2 - old^2)/2s^2 as (new-old)(new+old): no cancellation of two large sums.
        terms = jax.tree.map(lambda a, b: jnp.sum((a - b) * (a + b)), new, old)
        return -0.5 * sum(jax.tree.leaves(terms)) / self.std**2

    def describe(self) -> str:
        return f"Gaussian(scale={self.std:g})  [weight decay {1 / self.std**2:g}]"
