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
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from blackjax.mcmc.integrators import IntegratorState, velocity_verlet
from blackjax.mcmc.trajectory import static_integration

from bnn_shift.inference.metric import prior_metric, whiten_momentum
from bnn_shift.inference.target import Data, Target
from bnn_shift.priors.base import MassFactor, Prior
from bnn_shift.typing import PyTree


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
    n_steps: jax.Array  # leapfrog steps (gradient evaluations) of this trajectory


def default_trajectory_length(prior: Prior, temperature: float = 1.0) -> float:
    """(pi/2) * prior.trajectory_scale * sqrt(T): a quarter period of the prior-only dynamics."""
    return 0.5 * math.pi * prior.trajectory_scale * math.sqrt(temperature)


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


class HMC(eqx.Module):
    """HMC on a `Target` with the prior's preconditioner as metric: a dead direction (no
    likelihood) keeps sqrt(T) times the prior's sd.

    step_size: the nominal leapfrog step (an array: programs are reused across step sizes);
    n_steps: leapfrogs per trajectory; step_jitter: each trajectory's step is
    step_size * U(1 - j, 1 + j), 0 = fixed trajectory; factors: the prior's mass factors, one
    per parameter leaf (`HMC.for_target` computes them).

    The target's `trajectory_logdensity` (possibly reduced precision) drives the leapfrogs; the
    accept test always uses its float32 per-example log-likelihood, so the chain stays exact.
    """

    step_size: jax.Array = eqx.field(converter=lambda h: jnp.asarray(h, jnp.float32))
    n_steps: int = eqx.field(static=True)
    factors: list[MassFactor | None]
    step_jitter: float = eqx.field(static=True, default=DEFAULT_STEP_JITTER)
    divergence_threshold: float = eqx.field(static=True, default=1000.0)

    def __check_init__(self):
        check_step_jitter(self.step_jitter)

    @classmethod
    def for_target(
        cls, target: Target, params_like: PyTree, *, step_size, n_steps: int, **settings
    ) -> HMC:
        """The engine with `target`'s prior preconditioner for parameters like `params_like`."""
        factors = target.prior.preconditioner(params_like)
        return cls(step_size, n_steps, factors, **settings)

    def init(self, target: Target, position: PyTree, data: Data) -> HMCState:
        value, grad = jax.value_and_grad(target.trajectory_logdensity)(position, data)
        return HMCState(position, value, grad, target.loglik(position, data))

    def step(
        self, target: Target, key: jax.Array, state: HMCState, data: Data, warmup: jax.Array
    ) -> tuple[HMCState, HMCInfo]:
        """One trajectory; during warmup (burn-in) no MH test, diverging proposals refused."""
        return transition(
            target, key, state, data, warmup,
            step_size=self.step_size, n_steps=self.n_steps, factors=self.factors,
            step_jitter=self.step_jitter, divergence_threshold=self.divergence_threshold,
        )  # fmt: skip


def transition(
    target: Target,
    key: jax.Array,
    state: HMCState,
    data: Data,
    warmup: jax.Array,
    *,
    step_size: jax.Array,
    n_steps: int | jax.Array,
    factors: list[MassFactor | None],
    scales: PyTree | None = None,
    step_jitter: float = DEFAULT_STEP_JITTER,
    divergence_threshold: float = 1000.0,
) -> tuple[HMCState, HMCInfo]:
    """One HMC trajectory of n_steps (an int, or traced) with the prior's mass factors and,
    optionally, per-coordinate `scales` of the inverse mass in whitened coordinates; the
    termwise accept test, skipped during warmup (diverging proposals still refused)."""
    key_momentum, key_accept, key_jitter = jax.random.split(key, 3)
    if step_jitter:
        step_size = step_size * jax.random.uniform(
            key_jitter, minval=1.0 - step_jitter, maxval=1.0 + step_jitter
        )
    metric = prior_metric(factors, scales)
    integrator = velocity_verlet(
        lambda p: target.trajectory_logdensity(p, data), metric.kinetic_energy
    )
    momentum = metric.sample_momentum(key_momentum, state.position)
    start = IntegratorState(state.position, momentum, state.logdensity, state.logdensity_grad)
    end = static_integration(integrator)(start, step_size, n_steps)
    loglik = target.loglik(end.position, data)

    xi0 = jax.tree.leaves(whiten_momentum(factors, momentum, scales))
    xi1 = jax.tree.leaves(whiten_momentum(factors, end.momentum, scales))
    delta_kinetic = 0.5 * sum(jnp.sum((a - b) * (a + b)) for a, b in zip(xi0, xi1))
    log_ratio = (
        target.logdensity_diff(end.position, state.position, loglik, state.loglik) + delta_kinetic
    )
    finite = jnp.isfinite(log_ratio) & jnp.isfinite(end.logdensity)
    diverging = ~finite | (-log_ratio > divergence_threshold)
    log_ratio = jnp.where(finite, log_ratio, -jnp.inf)
    passes_mh = jnp.log(jax.random.uniform(key_accept)) < log_ratio
    # burn-in skips the MH test but still refuses diverging (finite yet exploding) proposals
    mh = jnp.logical_not(warmup)
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
        mh=mh,
        step_size=jnp.asarray(step_size, jnp.float32),
        n_steps=jnp.asarray(n_steps, jnp.int32),
    )
    return new_state, info


def check_step_jitter(step_jitter: float) -> None:
    """Raise a ValueError unless 0 <= step_jitter < 1."""
    if not (isinstance(step_jitter, int | float) and 0 <= step_jitter < 1):
        raise ValueError(
            f"step_jitter must lie in [0, 1) (the relative half-width of the step-size draw; "
            f"0 = the paper's fixed trajectory), got {step_jitter!r}"
        )
