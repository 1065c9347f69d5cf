"""MALA as a full-batch engine: one Langevin step with a Metropolis-Hastings correction.

BlackJAX's `mala` kernel proposes theta' = theta + h grad log p(theta) + sqrt(2h) xi and accepts
with the ratio of total log densities; that ratio loses the O(1) difference between two O(1e4)
float32 totals, so only its proposal is used here and the ratio is formed term by term by the
`Target` (and the Gaussian proposal densities of both directions in closed form).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from blackjax.mcmc.diffusions import overdamped_langevin

from bnn_shift.inference.kernel import default_trajectory_length
from bnn_shift.inference.posterior import Posterior
from bnn_shift.inference.sampler import (
    TUNE_STREAM,
    describe_init,
    prepare_chains,
    sample_chains,
    split_run_settings,
)
from bnn_shift.inference.target import Data, Target
from bnn_shift.inference.tuning import COLLAPSED_STEPS, check_not_stiff, tune_step_size
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree


class MALAState(NamedTuple):
    position: PyTree
    logdensity: jax.Array
    logdensity_grad: PyTree
    loglik: jax.Array  # (n,) per-example log-likelihood


class MALAInfo(NamedTuple):
    accepted: jax.Array
    acceptance_rate: jax.Array
    diverging: jax.Array  # non-finite proposal


class MALA(eqx.Module):
    """theta' ~ N(theta + h grad, 2h I), then MH (skipped during warmup, as HMC's burn-in)."""

    step_size: jax.Array = eqx.field(converter=lambda h: jnp.asarray(h, jnp.float32))

    def init(self, target: Target, position: PyTree, data: Data) -> MALAState:
        value, grad = jax.value_and_grad(target.logdensity)(position, data)
        return MALAState(position, value, grad, target.loglik(position, data))

    def step(
        self, target: Target, key: jax.Array, state: MALAState, data: Data, warmup: jax.Array
    ) -> tuple[MALAState, MALAInfo]:
        key_move, key_accept = jax.random.split(key)
        langevin = overdamped_langevin(jax.value_and_grad(lambda p: target.logdensity(p, data)))
        moved = langevin(key_move, state[:3], self.step_size)
        new = MALAState(*moved, target.loglik(moved[0], data))
        log_ratio = (
            target.logdensity_diff(new.position, state.position, new.loglik, state.loglik)
            + self._log_proposal(state, new)
            - self._log_proposal(new, state)
        )
        finite = jnp.isfinite(log_ratio)
        log_ratio = jnp.where(finite, log_ratio, -jnp.inf)
        passes = jnp.log(jax.random.uniform(key_accept)) < log_ratio
        accepted = finite & (warmup | passes)
        state = jax.tree.map(lambda a, b: jnp.where(accepted, a, b), new, state)
        return state, MALAInfo(accepted, jnp.minimum(1.0, jnp.exp(log_ratio)), ~finite)

    def _log_proposal(self, to: MALAState, start: MALAState) -> jax.Array:
        """log q(to | start) up to a constant: -|to - start - h grad(start)|^2 / (4h)."""
        gaps = jax.tree.map(
            lambda t, s, g: t - s - self.step_size * g,
            to.position,
            start.position,
            start.logdensity_grad,
        )
        return -sum(jnp.sum(g**2) for g in jax.tree.leaves(gaps)) / (4 * self.step_size)


def mala(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    step_size: float | str = "auto",
    target_acceptance: float = 0.574,
    n_tune: int = 100,
    seed: int = 0,
    **chain_settings,
) -> Posterior:
    """MALA chains through the shared full-batch driver (`hmc`'s n_iterations, n_burnin,
    n_chains, init, temperature, eval_sets, thin, keep, run_dir, devices, trace_params,
    trace_pointwise, progress, likelihood, iterations_per_call). step_size "auto": dual averaging to
    `target_acceptance` (0.574, optimal for MALA) over n_tune steps from chain 0's start."""
    run, chain_settings = split_run_settings(chain_settings)
    problem = prepare_chains(model, prior, x, y, seed=seed, **chain_settings)
    tuning = {}
    if step_size == "auto":
        start = jax.tree.map(lambda a: a[0], problem.positions)
        state = eqx.filter_jit(MALA(1e-4).init)(problem.target, start, problem.data)
        key = jax.random.fold_in(jax.random.key(seed), TUNE_STREAM)
        found = tune_step_size(
            MALA(1e-4), problem.target, state, problem.data, key,
            initial_step_size=1e-4, n_tune=n_tune, target_acceptance=target_acceptance,
        )  # fmt: skip
        distance = default_trajectory_length(problem.target.prior, problem.target.temperature)
        step_size, tuning = (
            check_not_stiff("mala", found.step_size, distance, COLLAPSED_STEPS),
            {"step_size_tuning": f"dual averaging to {target_acceptance}"},
        )
    settings = {
        "step_size": float(step_size),
        "init": describe_init(chain_settings.get("init", "model")),
    }
    return sample_chains("mala", MALA(step_size), problem, settings | tuning, seed=seed, **run)
