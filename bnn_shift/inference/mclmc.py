"""Microcanonical Langevin Monte Carlo (MCLMC) as full-batch engines: unadjusted and adjusted.

MCLMC (Robnik et al. 2023) moves at unit speed along isokinetic dynamics, with the momentum's
direction partially refreshed at every step (decoherence length L). Both engines run in the
prior-whitened coordinates z of `metric.py` (theta = A z per leaf, so an EmpCov layer is
isotropic there), with BlackJAX's McLachlan isokinetic integrator (two gradients per step) and
an optional diagonal inverse mass on z.

- `MCLMC`: unadjusted, as MILE samples (Sommer et al. 2025); its bias shrinks with the energy
  error per dimension the tuner aims at (BlackJAX's `mclmc_find_L_and_step_size`).
- `AdjustedMCLMC`: fixed-length isokinetic trajectories with a fresh direction and a
  Metropolis test (Robnik et al. 2025, "MAMS"); the ratio is formed termwise by the `Target`
  (float32-safe), as in our HMC kernel, so the chain is exact.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import blackjax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.mclmc_adaptation import MCLMCAdaptationState
from blackjax.mcmc.integrators import IntegratorState, isokinetic_mclachlan
from blackjax.util import generate_unit_vector

from bnn_shift.inference.kernel import default_trajectory_length, n_leapfrog_steps
from bnn_shift.inference.metric import from_whitened, to_whitened
from bnn_shift.inference.posterior import Posterior
from bnn_shift.inference.sampler import (
    TUNE_STREAM,
    describe_init,
    prepare_chains,
    sample_chains,
    split_run_settings,
)
from bnn_shift.inference.target import Data, Target
from bnn_shift.inference.tuning import check_not_stiff, tune_step_size
from bnn_shift.priors.base import MassFactor, Prior
from bnn_shift.typing import PyTree

GRADIENTS_PER_STEP = 2  # McLachlan's integrator evaluates the gradient twice per step
INIT_DIRECTION_KEY = 0  # the starting momentum direction (refreshed within ~L of travel)


class MCLMCState(NamedTuple):
    position: PyTree  # theta
    z: PyTree  # whitened coordinates: theta = A z
    momentum: PyTree  # unit vector in z coordinates
    logdensity: jax.Array
    logdensity_grad: PyTree  # with respect to z
    loglik: jax.Array  # (n,) per-example log-likelihood at `position`


class MCLMCInfo(NamedTuple):
    energy_error: jax.Array  # mean over the iteration's steps of energy change^2 / dim
    diverging: jax.Array  # a step produced a non-finite state and was undone
    n_gradients: jax.Array  # gradient evaluations of this iteration


class AdjustedMCLMCInfo(NamedTuple):
    accepted: jax.Array
    acceptance_rate: jax.Array
    diverging: jax.Array
    mh: jax.Array  # the Metropolis test was applied (False during burn-in)
    n_gradients: jax.Array


def _whitened_logdensity(target: Target, factors, data: Data):
    return lambda z: target.trajectory_logdensity(from_whitened(factors, z), data)


def _size(tree: PyTree) -> int:
    return sum(math.prod(a.shape) for a in jax.tree.leaves(tree))


class _Whitened(eqx.Module):
    """Shared by both engines: prior mass factors, a diagonal inverse mass on z, the step."""

    step_size: jax.Array = eqx.field(converter=lambda h: jnp.asarray(h, jnp.float32))
    inverse_mass: jax.Array  # (dim,) diagonal inverse mass on the ravelled z
    factors: list[MassFactor | None]

    def init(self, target: Target, position: PyTree, data: Data) -> MCLMCState:
        z = to_whitened(self.factors, position)
        value, grad = jax.value_and_grad(_whitened_logdensity(target, self.factors, data))(z)
        momentum = generate_unit_vector(jax.random.key(INIT_DIRECTION_KEY), z)
        return MCLMCState(position, z, momentum, value, grad, target.loglik(position, data))

    def _integrator(self, target: Target, data: Data):
        return isokinetic_mclachlan(
            _whitened_logdensity(target, self.factors, data), self.inverse_mass
        )


class MCLMC(_Whitened):
    """Unadjusted MCLMC: each driver iteration is `n_steps` integrator steps with partial
    momentum refresh (BlackJAX's kernel); no accept test, so `warmup` changes nothing."""

    L: jax.Array = eqx.field(converter=lambda v: jnp.asarray(v, jnp.float32))
    n_steps: int = eqx.field(static=True)

    def step(
        self, target: Target, key: jax.Array, state: MCLMCState, data: Data, warmup: jax.Array
    ) -> tuple[MCLMCState, MCLMCInfo]:
        del warmup
        kernel = blackjax.mcmc.mclmc.build_kernel()
        logdensity = _whitened_logdensity(target, self.factors, data)

        def one(s, k):
            s, info = kernel(k, s, logdensity, self.inverse_mass, self.L, self.step_size)
            return s, (info.energy_change, info.nonans)

        start = IntegratorState(state.z, state.momentum, state.logdensity, state.logdensity_grad)
        end, (energy_change, finite) = jax.lax.scan(one, start, jax.random.split(key, self.n_steps))
        theta = from_whitened(self.factors, end.position)
        new = MCLMCState(theta, *end, target.loglik(theta, data))
        info = MCLMCInfo(
            energy_error=jnp.mean(energy_change**2) / _size(state.z),
            diverging=~jnp.all(finite),
            n_gradients=jnp.asarray(GRADIENTS_PER_STEP * self.n_steps, jnp.int32),
        )
        return new, info


class AdjustedMCLMC(_Whitened):
    """Metropolis-adjusted MCLMC: a fresh unit direction, `n_steps` deterministic isokinetic
    steps, then the termwise MH test (skipped during burn-in, where diverging proposals are
    still refused, as in `HMC`)."""

    n_steps: int = eqx.field(static=True)
    divergence_threshold: float = eqx.field(static=True, default=1000.0)

    def step(
        self, target: Target, key: jax.Array, state: MCLMCState, data: Data, warmup: jax.Array
    ) -> tuple[MCLMCState, AdjustedMCLMCInfo]:
        key_direction, key_accept = jax.random.split(key)
        integrator = self._integrator(target, data)
        momentum = generate_unit_vector(key_direction, state.z)

        def one(_, carry):
            s, kinetic = carry
            s, change = integrator(s, self.step_size)
            return s, kinetic + change

        start = IntegratorState(state.z, momentum, state.logdensity, state.logdensity_grad)
        end, kinetic = jax.lax.fori_loop(0, self.n_steps, one, (start, jnp.zeros(())))
        theta = from_whitened(self.factors, end.position)
        loglik = target.loglik(theta, data)
        log_ratio = target.logdensity_diff(theta, state.position, loglik, state.loglik) - kinetic
        finite = jnp.isfinite(log_ratio) & jnp.isfinite(end.logdensity)
        diverging = ~finite | (-log_ratio > self.divergence_threshold)
        log_ratio = jnp.where(finite, log_ratio, -jnp.inf)
        mh = jnp.logical_not(warmup)
        passes = jnp.log(jax.random.uniform(key_accept)) < log_ratio
        accepted = ~diverging & jnp.where(mh, passes, True)
        proposal = MCLMCState(theta, *end, loglik)
        new = jax.tree.map(lambda a, b: jnp.where(accepted, a, b), proposal, state)
        return new, AdjustedMCLMCInfo(
            accepted=accepted,
            acceptance_rate=jnp.minimum(1.0, jnp.exp(log_ratio)),
            diverging=diverging,
            mh=mh,
            n_gradients=jnp.asarray(GRADIENTS_PER_STEP * self.n_steps, jnp.int32),
        )


def mclmc(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    step_size: float | str = "auto",
    L: float | str = "auto",
    steps_per_iteration: int | None = None,
    diagonal_preconditioning: bool = True,
    n_tune: int = 1000,
    seed: int = 0,
    **chain_settings,
) -> Posterior:
    """Unadjusted MCLMC chains through the shared full-batch driver (`hmc`'s n_iterations,
    n_burnin, n_chains, init, temperature, eval_sets, thin, keep_draws, run_dir, devices,
    trace_params, trace_pointwise, progress, likelihood, iterations_per_call).

    step_size / L "auto": BlackJAX's tuner (`mclmc_find_L_and_step_size`: step from the energy
    error, L from the autocorrelation, a diagonal inverse mass on z when
    diagonal_preconditioning) over about n_tune integrator steps from chain 0's start; the
    chains then start at their own starting points (burn-in moves them to the bulk).
    steps_per_iteration: integrator steps between recorded states (default round(L / step),
    one decoherence length). Each step costs GRADIENTS_PER_STEP gradients; attrs record the
    tuning's gradients as n_tuning_gradients.
    """
    run, chain_settings = split_run_settings(chain_settings)
    problem = prepare_chains(model, prior, x, y, seed=seed, **chain_settings)
    factors = problem.target.prior.preconditioner(problem.params)
    dim = _size(problem.params)
    inverse_mass = jnp.ones(dim, jnp.float32)
    tuned: dict = {"n_tuning_gradients": 0}
    if step_size == "auto" or L == "auto":
        params, n_tune_steps = _tune_mclmc(
            problem, factors, dim, seed, n_tune, diagonal_preconditioning
        )
        step_size = float(params.step_size) if step_size == "auto" else step_size
        L = float(params.L) if L == "auto" else L
        inverse_mass = jnp.asarray(params.inverse_mass_matrix, jnp.float32) * jnp.ones(dim)
        tuned = {
            "n_tuning_gradients": GRADIENTS_PER_STEP * int(n_tune_steps),
            "step_size_tuning": "BlackJAX mclmc_find_L_and_step_size"
            + (" with a diagonal inverse mass" if diagonal_preconditioning else ""),
        }
    _check_positive(step_size=step_size, L=L)
    n_steps = steps_per_iteration or max(1, round(L / step_size))
    engine = MCLMC(step_size, inverse_mass, factors, L, n_steps)
    settings = {"step_size": float(step_size), "L": float(L), "steps_per_iteration": n_steps}
    settings |= {"init": describe_init(chain_settings.get("init", "model"))} | tuned
    return sample_chains("mclmc", engine, problem, settings, seed=seed, **run)


def adjusted_mclmc(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    step_size: float | str = "auto",
    trajectory_length: float | None = None,
    target_acceptance: float = 0.9,
    n_tune: int = 100,
    max_steps: int = 100_000,
    seed: int = 0,
    **chain_settings,
) -> Posterior:
    """Metropolis-adjusted MCLMC chains through the shared driver (settings as `mclmc`).

    trajectory_length: distance travelled per proposal in whitened coordinates; default
    sqrt(dim) * hmc's default trajectory, the distance HMC's quarter period moves a
    dim-dimensional standard-scale point. step_size "auto": dual averaging to
    target_acceptance (0.9) over n_tune short proposals from chain 0's start.
    """
    run, chain_settings = split_run_settings(chain_settings)
    problem = prepare_chains(model, prior, x, y, seed=seed, **chain_settings)
    target = problem.target
    factors = target.prior.preconditioner(problem.params)
    dim = _size(problem.params)
    tau = trajectory_length or math.sqrt(dim) * default_trajectory_length(
        target.prior, target.temperature
    )
    inverse_mass = jnp.ones(dim, jnp.float32)
    tuning = {}
    if step_size == "auto":
        short = AdjustedMCLMC(tau / 100, inverse_mass, factors, 10)
        start = jax.tree.map(lambda a: a[0], problem.positions)
        state = eqx.filter_jit(short.init)(target, start, problem.data)
        key = jax.random.fold_in(jax.random.key(seed), TUNE_STREAM)
        found = tune_step_size(
            short, target, state, problem.data, key,
            initial_step_size=tau / 100, n_tune=n_tune, target_acceptance=target_acceptance,
        )  # fmt: skip
        step_size = check_not_stiff("adjusted_mclmc", found.step_size, tau, max_steps)
        tuning = {
            "step_size_tuning": f"dual averaging to {target_acceptance} over {n_tune} "
            "proposals of 10 steps",
            "n_tuning_gradients": GRADIENTS_PER_STEP * 10 * n_tune,
        }
    engine = AdjustedMCLMC(
        step_size, inverse_mass, factors, n_leapfrog_steps(tau, step_size, max_steps)
    )
    settings = {
        "step_size": float(step_size),
        "trajectory_length": float(tau),
        "n_integration_steps": engine.n_steps,
        "init": describe_init(chain_settings.get("init", "model")),
    } | tuning
    return sample_chains("adjusted_mclmc", engine, problem, settings, seed=seed, **run)


def _tune_mclmc(problem, factors, dim: int, seed: int, n_tune: int, diagonal: bool):
    """BlackJAX's L / step / diagonal-mass tuner on chain 0 -> (MCLMCAdaptationState, steps)."""
    target, data = problem.target, problem.data
    start = jax.tree.map(lambda a: a[0], problem.positions)
    scale = target.prior.trajectory_scale * math.sqrt(target.temperature)
    initial = MCLMCAdaptationState(
        L=math.sqrt(dim) * scale, step_size=0.25 * math.sqrt(dim) * scale,
        inverse_mass_matrix=jnp.ones(dim, jnp.float32),
    )  # fmt: skip
    key = jax.random.fold_in(jax.random.key(seed), TUNE_STREAM)
    _, params, n_steps = _run_tuner(
        target, factors, start, data, key, initial, round(n_tune / 0.3), diagonal
    )
    tuned = np.asarray([float(params.L), float(params.step_size)])
    if not (np.all(np.isfinite(tuned)) and np.all(tuned > 0)):
        raise FloatingPointError(
            f"MCLMC tuning from chain 0's start collapsed (L, step size = {tuned}): the start "
            "lies far outside the prior-whitened bulk, e.g. a network initialisation under an "
            "EmpCov prior, whose null directions have sd sqrt(eps); start at prior draws (init="
            '"prior") or pass step_size and L'
        )
    return params, n_steps


@eqx.filter_jit
def _run_tuner(target, factors, start, data, key, initial, num_steps: int, diagonal: bool):
    z = to_whitened(factors, start)
    logdensity = _whitened_logdensity(target, factors, data)
    state = blackjax.mcmc.mclmc.init(z, logdensity, jax.random.key(INIT_DIRECTION_KEY))
    return blackjax.mclmc_find_L_and_step_size(
        mclmc_kernel=blackjax.mcmc.mclmc.build_kernel(),
        num_steps=num_steps,
        state=state,
        rng_key=key,
        logdensity_fn=logdensity,
        diagonal_preconditioning=diagonal,
        params=initial,
    )


def _check_positive(**values) -> None:
    for name, v in values.items():
        if not (isinstance(v, int | float) and v > 0 and math.isfinite(v)):
            raise ValueError(f'{name} must be a finite positive number or "auto", got {v!r}')
