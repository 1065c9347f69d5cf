"""Step-size tuning for fixed-trajectory HMC: dual averaging on short trajectories.

The covariate-shift paper hand-picks one step size per model. `tune_step_size` finds one that
reaches a target acceptance rate with BlackJAX's dual-averaging update (Hoffman & Gelman 2014,
the rule Stan and BlackJAX's window adaptation use) driven by our own kernel, so the tuned value
is the one the float32-safe accept test of the real run sees. Trajectories during tuning are
short (`n_steps` leapfrogs): for a stable integrator the energy error oscillates rather than
grows along a trajectory, so acceptance depends on the step size far more than on the length,
and tuning costs a small fraction of one long trajectory per iteration. That argument fails
for an integrator that is unstable only over long horizons (a start far from the bulk), so
`stable_step_size` then runs a few trajectories of the real length and halves the step until
none diverges and their acceptance is near the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.step_size import dual_averaging_adaptation

from bnn_shift.inference.kernel import HMC, HMCState
from bnn_shift.inference.target import Data, Target

CHECK_TRAJECTORIES = 3  # full-length trajectories per step size in `stable_step_size`
COLLAPSED_STEPS = 10**8  # steps to move the prior's scale beyond which a tuned step has collapsed
MakeEngine = Callable[[float], HMC]  # step size -> engine with the real trajectory length


class StepSizeTuning(NamedTuple):
    step_size: float  # the dual-averaging average: use it for the run
    step_sizes: np.ndarray  # (n_tune,) step size tried at each tuning iteration
    acceptance_rate: np.ndarray  # (n_tune,) min(1, exp(log accept ratio)) of each trial


def check_tuning(n_tune: int, target_acceptance: float, initial_step_size: float) -> None:
    """Raise a ValueError naming the bad tuning setting."""
    if isinstance(n_tune, bool) or not isinstance(n_tune, int) or n_tune < 1:
        raise ValueError(f"n_tune must be a positive integer, got {n_tune!r}")
    if not 0 < target_acceptance < 1:
        raise ValueError(f"target_acceptance must lie in (0, 1), got {target_acceptance}")
    if not (initial_step_size > 0 and math.isfinite(initial_step_size)):
        raise ValueError(f"initial_step_size must be finite and > 0, got {initial_step_size}")


def check_not_stiff(sampler: str, step_size: float, distance: float, max_steps: float) -> float:
    """Refuse a tuned step that collapsed: moving `distance` (the trajectory length, about the
    prior's scale) would take more than `max_steps` steps. -> step_size."""
    n = distance / step_size if step_size > 0 else math.inf
    if not n <= max_steps:
        raise ValueError(
            f"{sampler}'s step-size tuning collapsed to {step_size:.3g}: the posterior is too "
            f"stiff at chain 0's start ({n:.3g} steps to move {distance:.3g}, more than "
            f"{max_steps:g}). Check the inputs' scale (standardise them), the prior scale and "
            "the temperature, or pass step_size yourself"
        )
    return step_size


def tune_step_size(
    engine: HMC,
    target: Target,
    state: HMCState,
    data: Data,
    key: jax.Array,
    *,
    initial_step_size: float,
    n_tune: int = 50,
    target_acceptance: float = 0.8,
) -> StepSizeTuning:
    """Dual-averaging step-size search with `engine` (one chain, unbatched `state`).

    The chain moves with Metropolis corrections while the step size adapts, so later trials see
    typical states rather than the starting point. Divergent trials count as acceptance 0 and
    push the step size down.
    """
    check_tuning(n_tune, target_acceptance, initial_step_size)
    final, sizes, rates = _dual_averaging(
        engine, target, state, data, key, jnp.asarray(initial_step_size), n_tune, target_acceptance
    )
    return StepSizeTuning(float(final), np.asarray(sizes), np.asarray(rates))


@eqx.filter_jit
def _dual_averaging(engine, target, state, data, key, initial_step_size, n_tune, acceptance):
    da_init, da_update, da_final = dual_averaging_adaptation(acceptance)

    def one(carry, key):
        state, da = carry
        step_size = jnp.exp(da.log_step_size)
        trial = eqx.tree_at(lambda e: e.step_size, engine, step_size)
        state, info = trial.step(target, key, state, data, jnp.asarray(False))
        rate = jnp.where(jnp.isfinite(info.acceptance_rate), info.acceptance_rate, 0.0)
        return (state, da_update(da, rate)), (step_size, rate)

    (_, da), (sizes, rates) = jax.lax.scan(
        one, (state, da_init(initial_step_size)), jax.random.split(key, n_tune)
    )
    return da_final(da), sizes, rates


class StabilityCheck(NamedTuple):
    step_size: float  # the largest step tried that passed (or the last one tried)
    n_halvings: int  # how often the tuned step was halved
    acceptance_rate: float  # mean acceptance of the passing step's check trajectories


def stable_step_size(
    make_engine: MakeEngine,
    target: Target,
    state: HMCState,
    data: Data,
    key: jax.Array,
    *,
    step_size: float,
    target_acceptance: float,
    n_trajectories: int = CHECK_TRAJECTORIES,
    max_halvings: int = 6,
) -> StabilityCheck:
    """Halve `step_size` until `n_trajectories` full-length trajectories from `state` (with MH
    moves) show no divergence and a mean acceptance of at least half the target."""
    rate = 0.0
    for halvings in range(max_halvings + 1):
        rates, diverging = _check_trajectories(
            make_engine(step_size), target, state, data, key, n_trajectories
        )
        rates, diverged = np.asarray(rates), bool(np.any(diverging))
        rate = float(rates.mean())
        if not diverged and rate >= target_acceptance / 2:
            return StabilityCheck(step_size, halvings, rate)
        if halvings < max_halvings:
            step_size /= 2
    return StabilityCheck(step_size, max_halvings, rate)


@eqx.filter_jit
def _check_trajectories(engine: HMC, target: Target, state: HMCState, data: Data, key, n: int):
    """Acceptance rates (n,) of n MH-corrected trajectories from `state`, and their
    divergence flags (n,)."""

    def one(state: HMCState, key: jax.Array):
        state, info = engine.step(target, key, state, data, jnp.asarray(False))
        rate = jnp.where(info.diverging, 0.0, info.acceptance_rate)
        return state, (rate, info.diverging)

    return jax.lax.scan(one, state, jax.random.split(key, n))[1]
