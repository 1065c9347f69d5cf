"""Full-batch HMC kernel: one pure step per trajectory, float32-safe accept test.

BlackJAX supplies the velocity-Verlet integrator and the static trajectory loop. Its own HMC
kernel forms the Metropolis ratio from total energies, which loses the O(1) differences between
two O(1e4) float32 totals; this kernel sums termwise differences instead (likelihood per example,
prior per parameter, kinetic energy per whitened coordinate) and can switch the MH test off for
burn-in, as the covariate-shift paper's sampler does.

Each trajectory's step size is drawn uniformly from [h(1 - j), h(1 + j)] (Neal 2011, sec. 5.4)
with the number of leapfrog steps fixed, so the trajectory length varies too. With a fixed
length a direction whose oscillation period divides the trajectory returns to (or mirrors) its
start every iteration and never mixes; j = 0 restores the paper's fixed trajectory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.mcmc.integrators import IntegratorState, velocity_verlet
from blackjax.mcmc.trajectory import static_integration

from bnn_shift.inference.metric import prior_metric, whiten_momentum
from bnn_shift.priors.base import Prior, PyTree

Data = tuple[jax.Array, jax.Array]  # (inputs (n, ...), labels (n,))
PerExampleLogLik = Callable[[PyTree, Data], jax.Array]  # (params, data) -> (n,)


class HMCState(NamedTuple):
    position: PyTree
    logdensity: jax.Array  # tempered log posterior, scalar
    logdensity_grad: PyTree
    loglik: jax.Array  # (n,) untempered per-example log-likelihood at `position`


DEFAULT_STEP_JITTER = 0.2  # relative half-width of the per-trajectory step-size draw


class HMCInfo(NamedTuple):
    accepted: jax.Array  # bool: the proposal became the new state
    acceptance_rate: jax.Array  # min(1, exp(log_accept_ratio)); 0 when diverging
    log_accept_ratio: jax.Array
    diverging: jax.Array  # bool: non-finite energy or energy error above the threshold
    energy: jax.Array  # Hamiltonian of the proposal
    mh: jax.Array  # bool: the Metropolis test was applied (False during burn-in)
    step_size: jax.Array  # the (jittered) leapfrog step of this trajectory


class HMCKernel(NamedTuple):
    init: Callable[[PyTree, Data], HMCState]
    step: Callable[..., tuple[HMCState, HMCInfo]]  # (key, state, data, mh[, step_size])
    n_steps: int
    step_size: float
    step_jitter: float


def default_trajectory_length(prior: Prior, temperature: float = 1.0) -> float:
    """(pi/2) * sigma_prior * sqrt(T): a quarter period of the prior-only dynamics."""
    return 0.5 * math.pi * prior.scale * math.sqrt(temperature)


def n_leapfrog_steps(trajectory_length: float, step_size: float, max_steps: int) -> int:
    """ceil(tau / h), checked against `max_steps`."""
    if not (step_size > 0 and math.isfinite(step_size)):
        raise ValueError(f"step_size must be a finite positive number, got {step_size}")
    if not (trajectory_length > 0 and math.isfinite(trajectory_length)):
        raise ValueError(f"trajectory_length must be finite and positive, got {trajectory_length}")
    n = math.ceil(trajectory_length / step_size - 1e-9)
    if n > max_steps:
        raise ValueError(
            f"trajectory {trajectory_length:g} at step {step_size:g} needs {n} leapfrog steps, "
            f"more than max_steps={max_steps}; raise the step size or max_steps"
        )
    return n


def build_kernel(
    loglik_fn: PerExampleLogLik,
    prior: Prior,
    params_like: PyTree,
    *,
    step_size: float,
    n_steps: int,
    temperature: float = 1.0,
    divergence_threshold: float = 1000.0,
    trajectory_loglik_fn: PerExampleLogLik | None = None,
    step_jitter: float = DEFAULT_STEP_JITTER,
) -> HMCKernel:
    """HMC on exp((sum_i loglik_i + log prior) / T) with the prior's preconditioner as metric.

    A dead direction (no likelihood) therefore has sd sqrt(T) times the prior's.
    step_jitter: each trajectory's step is step_size * U(1 - j, 1 + j); 0 = fixed trajectory.

    trajectory_loglik_fn: a cheaper (e.g. reduced-precision) likelihood for the leapfrog
    gradients only; the accept test always uses `loglik_fn`, so the chain stays exact.
    """
    check_step_jitter(step_jitter)
    fast_loglik = trajectory_loglik_fn or loglik_fn
    factors = prior.preconditioner(params_like)
    metric = prior_metric(factors)

    def logdensity(params: PyTree, data: Data) -> jax.Array:
        return (jnp.sum(fast_loglik(params, data)) + prior.log_prob(params)) / temperature

    def init(position: PyTree, data: Data) -> HMCState:
        value, grad = jax.value_and_grad(logdensity)(position, data)
        return HMCState(position, value, grad, loglik_fn(position, data))

    def step(key: jax.Array, state: HMCState, data: Data, mh: jax.Array, step_size=step_size):
        """One trajectory of `n_steps` leapfrogs; `step_size` may be traced (for tuning)."""
        key_momentum, key_accept, key_jitter = jax.random.split(key, 3)
        if step_jitter:
            step_size = step_size * jax.random.uniform(
                key_jitter, minval=1.0 - step_jitter, maxval=1.0 + step_jitter
            )
        integrator = velocity_verlet(lambda p: logdensity(p, data), metric.kinetic_energy)
        momentum = metric.sample_momentum(key_momentum, state.position)
        start = IntegratorState(state.position, momentum, state.logdensity, state.logdensity_grad)
        end = static_integration(integrator)(start, step_size, n_steps)
        loglik = loglik_fn(end.position, data)

        xi0 = jax.tree.leaves(whiten_momentum(factors, momentum))
        xi1 = jax.tree.leaves(whiten_momentum(factors, end.momentum))
        delta_kinetic = 0.5 * sum(jnp.sum((a - b) * (a + b)) for a, b in zip(xi0, xi1))
        delta_loglik = jnp.sum(loglik - state.loglik) / temperature
        delta_prior = prior.log_prob_diff(end.position, state.position) / temperature
        log_ratio = delta_loglik + delta_prior + delta_kinetic

        finite = jnp.isfinite(log_ratio) & jnp.isfinite(end.logdensity)
        diverging = ~finite | (-log_ratio > divergence_threshold)
        log_ratio = jnp.where(finite, log_ratio, -jnp.inf)
        passes_mh = jnp.log(jax.random.uniform(key_accept)) < log_ratio
        # burn-in skips the MH test but still refuses diverging (finite yet exploding) proposals
        accepted = ~diverging & jnp.where(mh, passes_mh, True)

        proposal = HMCState(end.position, end.logdensity, end.logdensity_grad, loglik)
        new_state = jax.tree.map(lambda a, b: jnp.where(accepted, a, b), proposal, state)
        energy = -end.logdensity + 0.5 * sum(jnp.sum(b**2) for b in xi1)
        info = HMCInfo(
            accepted=accepted,
            acceptance_rate=jnp.minimum(1.0, jnp.exp(log_ratio)),
            log_accept_ratio=log_ratio,
            diverging=diverging,
            energy=energy,
            mh=jnp.asarray(mh),
            step_size=jnp.asarray(step_size, jnp.float32),
        )
        return new_state, info

    return HMCKernel(init, step, n_steps, step_size, step_jitter)


def check_step_jitter(step_jitter: float) -> None:
    """Raise a ValueError unless 0 <= step_jitter < 1."""
    if not (isinstance(step_jitter, int | float) and 0 <= step_jitter < 1):
        raise ValueError(
            f"step_jitter must lie in [0, 1) (the relative half-width of the step-size draw; "
            f"0 = the paper's fixed trajectory), got {step_jitter!r}"
        )
