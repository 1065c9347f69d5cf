"""Test adapter: an HMC engine and its `Target` from a plain per-example log-likelihood.

The kernel tests write their models as `loglik_fn(params, data) -> (n,)` on raw dict parameters
with data = (x, y); this wraps such a function as a `Likelihood` (no model, so `static` is None)
and builds the engine with the prior's preconditioner, as `hmc` does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import equinox as eqx
import jax

from bnn_shift.inference.kernel import DEFAULT_STEP_JITTER, HMC
from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.inference.target import Data, Target
from bnn_shift.models.params import PyTree
from bnn_shift.priors.base import Prior

LogLik = Callable[[PyTree, Data], jax.Array]  # (params, (x, y)) -> (n,)


@functools.cache  # one Likelihood per function: targets built from it share compiled programs
def as_likelihood(loglik_fn: LogLik, name: str = "test") -> Likelihood:
    """`loglik_fn(params, (x, y))` as a `Likelihood` (predictions: the inputs, unused)."""
    return Likelihood(
        name,
        loglik=lambda params, static, x, y: loglik_fn(params, (x, y)),
        predict=lambda params, static, x: x,
        check=None,
    )


class TrajectoryTarget(Target):
    """A `Target` whose leapfrogs follow another per-example log-likelihood (e.g. a crude
    low-precision one); the accept test still uses `likelihood`."""

    trajectory_likelihood: Likelihood | None = eqx.field(static=True, default=None)

    def trajectory_logdensity(self, params: PyTree, data: Data) -> jax.Array:
        fast = self.trajectory_likelihood.loglik(params, self.static, data[0], data[1])
        return (fast.sum() + self.prior.log_prob(params)) / self.temperature


def engine_and_target(
    loglik_fn: LogLik,
    prior: Prior,
    params_like: PyTree,
    *,
    step_size: float,
    n_steps: int,
    temperature: float = 1.0,
    n: int = 1,
    step_jitter: float = DEFAULT_STEP_JITTER,
    divergence_threshold: float = 1000.0,
    trajectory_loglik_fn: LogLik | None = None,
) -> tuple[HMC, Target]:
    """HMC on exp((sum_i loglik_fn_i + log prior) / T) with the prior's metric, and its target.

    n: the training-set size the target records (only minibatch estimates use it).
    trajectory_loglik_fn: drives the leapfrog gradients only (default: `loglik_fn`).
    """
    likelihood = as_likelihood(loglik_fn)
    if trajectory_loglik_fn is None:
        target = Target(likelihood, prior, None, float(temperature), n)
    else:
        fast = as_likelihood(trajectory_loglik_fn, "trajectory")
        target = TrajectoryTarget(
            likelihood, prior, None, float(temperature), n, trajectory_likelihood=fast
        )
    engine = HMC.for_target(
        target,
        params_like,
        step_size=step_size,
        n_steps=n_steps,
        step_jitter=step_jitter,
        divergence_threshold=divergence_threshold,
    )
    return engine, target
