"""Tempered priors: log p(theta) / T (T < 1 is a cold prior)."""

from __future__ import annotations

import math

import equinox as eqx
import jax

from bnn_shift.priors.base import MassFactor, Prior, PyTree


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
    def scale(self) -> float:
        return self.prior.scale * math.sqrt(self.temperature)

    def describe(self) -> str:
        return f"Temperature(T={self.temperature:g}) of {self.prior.describe()}"


def is_gaussian(prior: Prior) -> bool:
    """True for zero-mean Gaussian priors, whose tempered versions are Gaussians too."""
    from bnn_shift.priors.compose import ByPath
    from bnn_shift.priors.empcov import EmpCov
    from bnn_shift.priors.gaussian import Gaussian

    if isinstance(prior, ByPath):
        return all(is_gaussian(p) for p in prior.priors)
    if isinstance(prior, Temperature):
        return is_gaussian(prior.prior)
    return isinstance(prior, Gaussian | EmpCov)
