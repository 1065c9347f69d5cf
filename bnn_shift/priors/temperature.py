"""Tempered priors: log p(theta) / T (T < 1 is a cold prior)."""

from __future__ import annotations

import math

import equinox as eqx
import jax

from bnn_shift.priors.base import MassFactor, Part, Prior
from bnn_shift.priors.empcov import EmpCov
from bnn_shift.priors.gaussian import Gaussian
from bnn_shift.typing import PyTree


class Temperature(Prior):
    """Wraps a prior as p(theta)^(1/T). For Gaussian priors this is N(0, T * cov).

    `log_prob` is the unnormalised tempered log density (the normaliser changes with T).
    """

    prior: Prior
    temperature: float = eqx.field(static=True)

    def __init__(self, prior: Prior, temperature: float):
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be finite and > 0, got {temperature}")
        self.prior = prior
        self.temperature = float(temperature)

    def log_prob(self, params: PyTree) -> jax.Array:
        return self.prior.log_prob(params) / self.temperature

    def log_prob_diff(self, new: PyTree, old: PyTree) -> jax.Array:
        return self.prior.log_prob_diff(new, old) / self.temperature

    def sample(self, key: jax.Array, params_like: PyTree) -> PyTree:
        if not is_gaussian(self.prior):
            raise NotImplementedError(
                f"sampling a tempered {type(self.prior).__name__} prior has no closed form; "
                "only Gaussian-family priors (Gaussian, EmpCov and compositions) can be sampled"
            )
        factor = math.sqrt(self.temperature)
        return jax.tree.map(lambda x: x * factor, self.prior.sample(key, params_like))

    def preconditioner(self, params_like: PyTree) -> list[MassFactor | None]:
        return self.prior.preconditioner(params_like)  # tempering scales every direction alike

    @property
    def trajectory_scale(self) -> float:
        """The wrapped prior's, times sqrt(T): tempering a Gaussian scales its std so."""
        return self.prior.trajectory_scale * math.sqrt(self.temperature)

    def children(self) -> tuple[Prior, ...]:
        return (self.prior,)

    def split(self, params_like: PyTree) -> tuple[Part, ...]:
        """The wrapped prior over every leaf, with weight 1/T."""
        (part,) = super().split(params_like)
        return (part._replace(weight=1.0 / self.temperature),)

    def describe(self) -> str:
        return f"Temperature(T={self.temperature:g}) of {self.prior.describe()}"


def is_gaussian(prior: Prior) -> bool:
    """True for zero-mean Gaussian priors (built only from Gaussian and EmpCov priors), whose
    tempered versions are Gaussians too."""
    built_from = [p for p in prior.walk() if not p.children()]
    return all(isinstance(p, Gaussian | EmpCov) for p in built_from)
