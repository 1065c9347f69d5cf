"""Full-batch HMC that adapts its step size (and optionally a diagonal mass) during burn-in.

Stan's windowed schedule (BlackJAX's `build_schedule` and window-adaptation state, one update per
warmup iteration): dual averaging of the step size throughout, a diagonal inverse mass estimated
from the positions of each slow window, the step re-tuned after each window. The diagonal acts
on the prior-whitened coordinates (`metric.py`: M^-1 = A S^2 A), so it composes with an EmpCov
layer's preconditioner (or its whitened sampling, `whitening.py`). It is normalised to mean 1:
the trajectory keeps its length in prior units ((pi/2) * scale by default) and the dual
averaging absorbs the overall scale. Every iteration, burn-in included, has the MH test.
With `adapt_mass=False` the schedule has only fast windows: dual averaging of the step alone.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from blackjax.adaptation.window_adaptation import WindowAdaptationState, base, build_schedule
from jax.flatten_util import ravel_pytree

from bnn_shift.inference.kernel import DEFAULT_STEP_JITTER, HMCInfo, HMCState, transition
from bnn_shift.inference.metric import to_whitened
from bnn_shift.inference.target import Data, Target
from bnn_shift.priors.base import MassFactor
from bnn_shift.typing import PyTree


def stan_window_adaptation(target_acceptance: float):
    """BlackJAX's (init, update, final) of Stan's window adaptation with a diagonal mass."""
    # base() is deprecated in blackjax 1.7 for a whole-loop API (staged_adaptation); one
    # adaptation step per driver iteration needs its (init, update, final)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return base(is_mass_matrix_diagonal=True, target_acceptance_rate=target_acceptance)


class AdaptiveHMCState(NamedTuple):
    position: PyTree
    logdensity: jax.Array
    logdensity_grad: PyTree
    loglik: jax.Array  # (n,)
    adaptation: WindowAdaptationState
    n_adapted: jax.Array  # warmup iterations taken (index into the schedule)


class AdaptiveHMC(eqx.Module):
    """HMC of a fixed trajectory length whose warmup iterations adapt the step size and, with
    adapt_mass, a diagonal inverse mass (Stan's schedule over n_burnin iterations), both fixed
    afterwards. A trajectory needing more than max_steps leapfrogs is cut to max_steps."""

    schedule: jax.Array  # (n_burnin, 2) int: window stage, end of a slow window
    factors: list[MassFactor | None]
    trajectory_length: float = eqx.field(static=True)
    initial_step_size: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True, default=100_000)
    step_jitter: float = eqx.field(static=True, default=DEFAULT_STEP_JITTER)
    target_acceptance: float = eqx.field(static=True, default=0.8)

    @classmethod
    def for_target(
        cls, target: Target, params_like: PyTree, n_burnin: int, adapt_mass: bool = True, **settings
    ):
        """The engine for `target`'s prior preconditioner, adapting over n_burnin iterations
        (the step alone when not adapt_mass: every window fast, the mass stays the identity)."""
        schedule = jnp.asarray(build_schedule(max(n_burnin, 1)), jnp.int32)
        if not adapt_mass:
            schedule = jnp.zeros_like(schedule)
        return cls(schedule, target.prior.preconditioner(params_like), **settings)

    def _adaptation(self):
        return stan_window_adaptation(self.target_acceptance)

    def init(self, target: Target, position: PyTree, data: Data) -> AdaptiveHMCState:
        value, grad = jax.value_and_grad(target.trajectory_logdensity)(position, data)
        whitened = to_whitened(self.factors, position)
        adaptation = self._adaptation()[0](whitened, self.initial_step_size)
        loglik = target.loglik(position, data)
        return AdaptiveHMCState(position, value, grad, loglik, adaptation, jnp.zeros((), jnp.int32))

    def step(
        self,
        target: Target,
        key: jax.Array,
        state: AdaptiveHMCState,
        data: Data,
        warmup: jax.Array,
    ) -> tuple[AdaptiveHMCState, HMCInfo]:
        _, update, final = self._adaptation()
        adapted = state.adaptation
        step_size, inverse_mass = jax.lax.cond(
            warmup, lambda a: (a.step_size, a.inverse_mass_matrix), final, adapted
        )
        unravel = ravel_pytree(state.position)[1]
        scales = unravel(jnp.sqrt(inverse_mass / jnp.mean(inverse_mass)))
        n_steps = jnp.clip(jnp.ceil(self.trajectory_length / step_size), 1, self.max_steps)
        inner = HMCState(*state[:4])
        new, info = transition(
            target, key, inner, data, jnp.asarray(False),
            step_size=step_size, n_steps=n_steps.astype(jnp.int32), factors=self.factors,
            scales=scales, step_jitter=self.step_jitter,
        )  # fmt: skip
        stage = self.schedule[jnp.minimum(state.n_adapted, len(self.schedule) - 1)]
        rate = jnp.where(info.diverging, 0.0, info.acceptance_rate)
        adapted = jax.lax.cond(
            warmup,
            lambda a: update(
                a, (stage[0], stage[1].astype(bool)), to_whitened(self.factors, new.position), rate
            ),
            lambda a: a,
            adapted,
        )
        n_adapted = state.n_adapted + jnp.asarray(warmup, jnp.int32)
        return AdaptiveHMCState(*new, adapted, n_adapted), info
