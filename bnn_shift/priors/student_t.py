"""Factorised Student-t prior: log density -(nu+1)/2 * sum log(1 + theta^2/(nu s^2)) + const."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from bnn_shift.priors.base import FactorisedPrior
from bnn_shift.typing import PyTree


class StudentT(FactorisedPrior):
    """theta_i ~ t_df(0, s) iid: location-scale t with s = `scale` = 1/sqrt(wd) (the paper's form).

    Its standard deviation is s*sqrt(df/(df-2)) for df > 2; use `StudentT.matched(df, std)` to
    pick s for a given standard deviation.
    """

    df: float = eqx.field(static=True)
    s: float = eqx.field(static=True)  # the t scale parameter, not the standard deviation

    def __init__(self, df: float, scale: float):
        if not (math.isfinite(df) and df > 0):
            raise ValueError(f"StudentT df (degrees of freedom) must be finite and > 0, got {df}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"StudentT scale must be a finite positive number, got {scale}")
        self.df = float(df)
        self.s = float(scale)

    @classmethod
    def matched(cls, df: float, std: float) -> StudentT:
        """The StudentT(df, s) whose standard deviation is `std`: s = std*sqrt((df-2)/df)."""
        if not (math.isfinite(df) and df > 2):
            raise ValueError(
                f"StudentT.matched needs df > 2 (the variance is infinite otherwise), got {df}; "
                "use StudentT(df, scale) to set the scale parameter directly"
            )
        if not (math.isfinite(std) and std > 0):
            raise ValueError(f"StudentT.matched std must be a finite positive number, got {std}")
        return cls(df, std * math.sqrt((df - 2) / df))

    @property
    def scale(self) -> float:
        """The t scale parameter s."""
        return self.s

    @property
    def std(self) -> float:
        """Standard deviation s*sqrt(df/(df-2)); infinite for df <= 2."""
        return self.s * math.sqrt(self.df / (self.df - 2)) if self.df > 2 else math.inf

    @property
    def trajectory_scale(self) -> float:
        """The standard deviation; for df <= 2 (infinite variance) the scale s."""
        return self.std if self.df > 2 else self.s

    def distribution(self) -> dist.StudentT:
        return dist.StudentT(self.df, 0.0, self.s)

    def log_prob_diff(self, new: PyTree, old: PyTree) -> jax.Array:
        # log(1 + x_a) - log(1 + x_b) = log1p((x_a - x_b)/(1 + x_b)), x_a - x_b from (a-b)(a+b):
        # exact for small moves, and summed only after the per-parameter difference is formed.
        c = 1.0 / (self.df * self.s**2)

        def term(a: jax.Array, b: jax.Array) -> jax.Array:
            return jnp.sum(jnp.log1p(c * (a - b) * (a + b) / (1.0 + c * b * b)))

        terms = jax.tree.map(term, new, old)
        return -0.5 * (self.df + 1.0) * sum(jax.tree.leaves(terms))

    def describe(self) -> str:
        std = f"std {self.std:.4g}" if self.df > 2 else "infinite variance"
        return (
            f"StudentT(df={self.df:g}, scale={self.s:g})  [{std}, weight decay {1 / self.s**2:g}]"
        )
