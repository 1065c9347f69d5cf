"""`Target`: the tempered log posterior every engine works on, its conventions stated once.

    log_joint(theta)   = sum_i log p(y_i | x_i, theta) + log p(theta)
    logdensity(theta)  = log_joint(theta) / T                       (the tempered posterior)
    minibatch estimate = (n / b) sum_{i in batch} log p(y_i | x_i, theta) + log p(theta)

Rows whose mask is 0 (padding added to split the data over devices) count for nothing. The
difference of two log densities is formed term by term (per example, per parameter), so that a
float32 accept test keeps the O(1) digits that two O(1e4) totals would lose.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.inference.likelihood import Likelihood, resolve_likelihood, with_precision
from bnn_shift.inference.whitening import InputWhitening
from bnn_shift.models.params import partition_params
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree

Data = tuple[jax.Array, ...]  # (x (n, ...), y (n, ...)) or (x, y, mask (n,))


class Target(eqx.Module):
    """The tempered posterior of a model's parameters given n training examples.

    likelihood: the observation model; prior: over the parameter pytree; static: the model's
    non-parameter part (eqx.partition); temperature: T; n: the training-set size (minibatch
    estimates scale by n / batch); precision: matmul precision of `trajectory_logdensity`
    ("float32", "tensorfloat32" or "bfloat16"); whitening: when set (`whitening.py`), positions
    are whitened coordinates and the training data it sees are rotated to match.

    A `Target` is a pytree: programs take it as an argument, so a second fit with the same
    shapes and settings reuses the compiled program.
    """

    likelihood: Likelihood = eqx.field(static=True)
    prior: Prior
    static: PyTree = eqx.field(static=True)
    temperature: float = eqx.field(static=True)
    n: int = eqx.field(static=True)
    precision: str = eqx.field(static=True, default="float32")
    whitening: InputWhitening | None = None  # positions in whitened coordinates, data rotated

    def params_of(self, position: PyTree) -> PyTree:
        """The model's parameters at a sampler position (they differ only under `whitening`)."""
        return position if self.whitening is None else self.whitening.to_params(position)

    def loglik(self, params: PyTree, data: Data) -> jax.Array:  # (n,)
        """Per-example log-likelihood; masked rows give 0."""
        return _masked(self.likelihood.loglik(params, self.static, data[0], data[1]), data)

    def log_joint(self, params: PyTree, data: Data) -> jax.Array:
        """sum_i log p(y_i | x_i, params) + log p(params), untempered."""
        return jnp.sum(self.loglik(params, data)) + self.prior.log_prob(params)

    def logdensity(self, params: PyTree, data: Data) -> jax.Array:
        """The tempered log posterior log_joint / T (up to its normaliser)."""
        return self.log_joint(params, data) / self.temperature

    def trajectory_logdensity(self, params: PyTree, data: Data) -> jax.Array:
        """`logdensity` with the likelihood's matmuls in `precision`, for leapfrog gradients."""
        fast = with_precision(self.likelihood.loglik, self.precision)
        loglik = _masked(fast(params, self.static, data[0], data[1]), data)
        return (jnp.sum(loglik) + self.prior.log_prob(params)) / self.temperature

    def minibatch_log_joint(self, params: PyTree, batch: Data) -> jax.Array:
        """Unbiased estimate of `log_joint` from a batch of b examples: likelihood * n / b."""
        scale = self.n / batch[0].shape[0]
        return jnp.sum(self.loglik(params, batch)) * scale + self.prior.log_prob(params)

    def minibatch_logdensity(self, params: PyTree, batch: Data) -> jax.Array:
        """Unbiased estimate of `logdensity` from a batch: minibatch_log_joint / T."""
        return self.minibatch_log_joint(params, batch) / self.temperature

    def logdensity_diff(
        self, new: PyTree, old: PyTree, loglik_new: jax.Array, loglik_old: jax.Array
    ) -> jax.Array:
        """logdensity(new) - logdensity(old) from per-example log-likelihoods (n,) of each,
        summed term by term (float32-safe)."""
        delta = jnp.sum(loglik_new - loglik_old) + self.prior.log_prob_diff(new, old)
        return delta / self.temperature

    def predict(self, position: PyTree, x: jax.Array) -> jax.Array:  # (m, ...)
        """One sampler position's prediction on inputs x as given (probabilities or means)."""
        return self.likelihood.predict(self.params_of(position), self.static, x)


def make_target(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    likelihood: str | Likelihood = "categorical",
    temperature: float = 1.0,
    precision: str = "float32",
) -> tuple[Target, PyTree, np.ndarray, np.ndarray]:
    """Check a model, prior, data and settings -> (target, the model's parameters, x, y as the
    likelihood checked them)."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    params, static = partition_params(model)
    lik = resolve_likelihood(likelihood)
    x, y = lik.check(model, x, y)
    with_precision(lik.loglik, precision)  # checks the name
    jax.eval_shape(prior.log_prob, params)  # traced, not run: the prior's rules fit the model
    return Target(lik, prior, static, float(temperature), len(x), precision), params, x, y


def _masked(loglik: jax.Array, data: Data) -> jax.Array:
    return loglik if len(data) < 3 else jnp.where(data[2] > 0, loglik, 0.0)
