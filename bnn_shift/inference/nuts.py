"""NUTS as a full-batch engine: BlackJAX's multinomial NUTS with Stan's windowed adaptation of
the step size and a diagonal mass matrix, one adaptation step per warmup iteration.

The tree depth adapts per iteration, so it is a poor fit for large networks (each iteration may
cost up to 2^max_depth gradients) but a good reference sampler and a way to find step sizes.
Running under the shared driver gives it chains in lockstep, sharding, checkpoints and resume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.window_adaptation import WindowAdaptationState, build_schedule
from blackjax.mcmc import hmc as blackjax_hmc
from blackjax.mcmc import nuts as blackjax_nuts

from bnn_shift.inference.adaptive_hmc import stan_window_adaptation
from bnn_shift.inference.chains import check_count
from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.inference.posterior import Posterior
from bnn_shift.inference.sampler import prepare_chains, sample_chains
from bnn_shift.inference.target import Data, Target
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree


class NUTSState(NamedTuple):
    position: PyTree
    logdensity: jax.Array  # tempered log posterior
    logdensity_grad: PyTree
    loglik: jax.Array  # (n,) per-example log-likelihood
    adaptation: WindowAdaptationState
    n_adapted: jax.Array  # warmup steps taken (index into the schedule)


class NUTSInfo(NamedTuple):
    acceptance_rate: jax.Array
    diverging: jax.Array
    n_steps: jax.Array  # leapfrog steps of the trajectory
    energy: jax.Array
    step_size: jax.Array


class NUTS(eqx.Module):
    """NUTS whose warmup iterations adapt step size and diagonal mass (Stan's schedule for
    n_warmup steps); afterwards both stay at the adapted values.

    n_warmup: the driver's n_burnin; target_acceptance: dual averaging's goal; max_depth:
    tree doublings at most."""

    schedule: jax.Array  # (n_warmup, 2) int: window stage, end of a slow window
    target_acceptance: float = eqx.field(static=True, default=0.8)
    max_depth: int = eqx.field(static=True, default=10)
    initial_step_size: float = eqx.field(static=True, default=1.0)

    @classmethod
    def for_warmup(cls, n_warmup: int, **settings) -> NUTS:
        """The engine for a run whose first n_warmup iterations adapt."""
        return cls(jnp.asarray(build_schedule(n_warmup), jnp.int32), **settings)

    def _adaptation(self):
        return stan_window_adaptation(self.target_acceptance)

    def init(self, target: Target, position: PyTree, data: Data) -> NUTSState:
        value, grad = jax.value_and_grad(target.logdensity)(position, data)
        adaptation = self._adaptation()[0](position, self.initial_step_size)
        loglik = target.loglik(position, data)
        return NUTSState(position, value, grad, loglik, adaptation, jnp.asarray(0, jnp.int32))

    def step(
        self, target: Target, key: jax.Array, state: NUTSState, data: Data, warmup: jax.Array
    ) -> tuple[NUTSState, NUTSInfo]:
        _, update, final = self._adaptation()
        adapted = state.adaptation
        step_size, inverse_mass = jax.lax.cond(
            warmup,
            lambda a: (a.step_size, a.inverse_mass_matrix),
            final,
            adapted,
        )
        hmc_state = blackjax_hmc.HMCState(state.position, state.logdensity, state.logdensity_grad)
        new, info = blackjax_nuts.build_kernel()(
            key, hmc_state, lambda p: target.logdensity(p, data), step_size, inverse_mass,
            self.max_depth,
        )  # fmt: skip
        stage = self.schedule[jnp.minimum(state.n_adapted, len(self.schedule) - 1)]
        adapted = jax.lax.cond(
            warmup,
            lambda a: update(
                a, (stage[0], stage[1].astype(bool)), new.position, info.acceptance_rate
            ),
            lambda a: a,
            adapted,
        )
        state = NUTSState(
            new.position,
            new.logdensity,
            new.logdensity_grad,
            target.loglik(new.position, data),
            adapted,
            state.n_adapted + jnp.asarray(warmup, jnp.int32),
        )
        info = NUTSInfo(
            info.acceptance_rate,
            info.is_divergent,
            info.num_integration_steps,
            info.energy,
            jnp.asarray(step_size, jnp.float32),
        )
        return state, info


def nuts(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    n_warmup: int = 500,
    n_samples: int = 500,
    n_chains: int = 1,
    target_acceptance: float = 0.8,
    max_depth: int = 10,
    temperature: float = 1.0,
    seed: int = 0,
    eval_sets: Mapping[str, np.ndarray | tuple[np.ndarray, np.ndarray]] | None = None,
    thin: int = 1,
    run_dir: str | Path | None = None,
    devices: Sequence[jax.Device] | None = None,
    trace_params: Sequence[str] = (),
    trace_pointwise: Sequence[str] = (),
    progress: bool = True,
    likelihood: str | Likelihood = "categorical",
    iterations_per_call: int | None = None,
) -> Posterior:
    """NUTS on the full-batch posterior: n_warmup adapting iterations, then n_samples draws
    (every post-warmup state) per chain, through the same driver as `hmc` (lockstep chains,
    data split over `devices`, checkpoints in `run_dir` with bit-identical resume, running
    model averages on eval_sets, function-space R-hat with >= 2 chains).

    stats: acceptance_rate, diverging, n_steps, energy, step_size, log_density, each
    (n_warmup + n_samples, n_chains); attrs["step_sizes"] the adapted step per chain.
    likelihood: "categorical", "gaussian" or a `Likelihood`; labelled eval_sets need
    "categorical". trace_pointwise: as in `hmc`.
    """
    for name, value in (("n_warmup", n_warmup), ("n_samples", n_samples), ("n_chains", n_chains)):
        check_count(name, value)
    if not 0 < target_acceptance < 1:
        raise ValueError(f"target_acceptance must lie in (0, 1), got {target_acceptance}")
    problem = prepare_chains(
        model, prior, x, y,
        likelihood=likelihood, temperature=temperature, n_chains=n_chains, seed=seed,
        devices=devices, eval_sets=eval_sets,
    )  # fmt: skip
    engine = NUTS.for_warmup(n_warmup, target_acceptance=target_acceptance, max_depth=max_depth)
    settings = {"n_warmup": n_warmup, "target_acceptance": target_acceptance}
    post = sample_chains(
        "nuts", engine, problem, settings | {"max_depth": max_depth},
        n_iterations=n_warmup + n_samples, n_burnin=n_warmup, seed=seed, thin=thin,
        run_dir=run_dir, trace_params=trace_params, trace_pointwise=trace_pointwise,
        progress=progress, iterations_per_call=iterations_per_call,
    )  # fmt: skip
    step_sizes = post.stats["step_size"][n_warmup:]
    post.attrs["step_sizes"] = [float(h) for h in step_sizes[0]] if len(step_sizes) else []
    post.attrs["step_size"] = float(np.mean(post.attrs["step_sizes"] or [np.nan]))
    return post
