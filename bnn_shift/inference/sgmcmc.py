"""SG-MCMC as a minibatch engine (SGLD / SGHMC, optionally cyclical), and `sgld(...)`."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.sgmcmc.diffusions import overdamped_langevin
from blackjax.util import generate_gaussian_noise

from bnn_shift.inference.chains import check_count
from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.inference.minibatch import EpochEngine, fit_epochs, prepare_epochs
from bnn_shift.inference.posterior import Posterior, empty_draws, stack_draws
from bnn_shift.inference.target import Data, Target
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree


class SGMCMCState(NamedTuple):
    """Position, and for SGHMC (momentum > 0) the velocity; None for SGLD."""

    position: PyTree
    velocity: PyTree | None


def init(position: PyTree, momentum: float = 0.0) -> SGMCMCState:
    """Start at `position`, at rest."""
    velocity = jax.tree.map(jnp.zeros_like, position) if momentum > 0 else None
    return SGMCMCState(position, velocity)


def step(
    key: jax.Array,
    state: SGMCMCState,
    logdensity_grad: PyTree,
    step_size: jax.Array,
    *,
    momentum: float = 0.0,
    temperature: jax.Array | float = 1.0,
) -> SGMCMCState:
    """One SGLD (momentum = 0) or SGHMC (friction 1 - momentum) update for exp(log p / T).

    step_size is the Langevin step eta on the full log density log p (whose gradient estimate
    is `logdensity_grad`); temperature = 0 turns the noise off (plain SGD / heavy ball):
      SGLD:  theta += eta g + sqrt(2 eta T) xi
      SGHMC: v = momentum v + eta g + sqrt(2 (1 - momentum) eta T) xi;  theta += v
    """
    if state.velocity is None:
        # blackjax.sgld's own integrator; its kernel is bypassed only because its grad_estimator
        # cannot also hand back the minibatch loss that stats["loss"] records.
        position = overdamped_langevin()(
            key, state.position, logdensity_grad, step_size, temperature
        )
        return SGMCMCState(position, None)
    # hand-written: blackjax.sghmc redraws the momentum on every call (and reuses one minibatch
    # for all its integration steps), so it cannot carry a velocity across minibatches.
    noise = generate_gaussian_noise(key, state.velocity)
    scale = jnp.sqrt(2 * (1 - momentum) * step_size * temperature)
    velocity = jax.tree.map(
        lambda v, g, e: momentum * v + step_size * g + scale * e,
        state.velocity,
        logdensity_grad,
        noise,
    )
    return SGMCMCState(jax.tree.map(jnp.add, state.position, velocity), velocity)


def step_size_schedule(
    learning_rate: float, total_steps: int, cycles: int = 1
) -> Callable[[jax.Array], jax.Array]:
    """Step -> learning rate: constant for cycles = 1; else cSG-MCMC's cyclical cosine,
    lr/2 (cos(pi (k mod L) / L) + 1) with cycle length L = total_steps / cycles, which is lr
    at every cycle start and falls towards 0 at every cycle end."""
    if cycles == 1:
        return lambda k: jnp.asarray(learning_rate, jnp.float32) + 0.0 * k
    length = total_steps / cycles

    def schedule(k):
        phase = jnp.mod(jnp.asarray(k, jnp.float32), length) / length
        return 0.5 * learning_rate * (jnp.cos(jnp.pi * phase) + 1.0)

    return schedule


def sampling_epochs(
    n_epochs: int, cycles: int, explore_fraction: float
) -> np.ndarray:  # (n_epochs,) bool
    """Epochs in a sampling phase: all for cycles = 1; otherwise the epochs of each cycle after
    its first floor(explore_fraction * epochs_per_cycle) (the noise-free exploration phase)."""
    if cycles == 1:
        return np.ones(n_epochs, bool)
    per_cycle = n_epochs // cycles
    return np.arange(n_epochs) % per_cycle >= math.floor(explore_fraction * per_cycle)


def draw_epochs(
    n_epochs: int, n_burnin_epochs: int, thin_epochs: int, cycles: int, explore_fraction: float
) -> np.ndarray:  # (n_draws,) int
    """Epochs whose end state is kept: sampling-phase epochs from n_burnin_epochs on, every
    thin_epochs-th counted back from the end of each cycle (so each cycle's last epoch is one)."""
    per_cycle = n_epochs // cycles
    epochs = np.arange(n_epochs)
    to_cycle_end = per_cycle - 1 - epochs % per_cycle
    keep = sampling_epochs(n_epochs, cycles, explore_fraction) & (epochs >= n_burnin_epochs)
    return epochs[keep & (to_cycle_end % thin_epochs == 0)]


class SGMCMCInfo(NamedTuple):
    loss: jax.Array  # -(minibatch log joint) / n


class SGMCMC(EpochEngine):
    """SGLD (momentum 0) or SGHMC on a Target: drift learning_rate * grad(log joint)/n per
    step (eta = learning_rate / n on the full log density), noise scaled by the target's
    temperature times noisy[epoch] (0 in cSG-MCMC's exploration phases)."""

    learning_rate: float = eqx.field(static=True)
    total_steps: int = eqx.field(static=True)
    steps_per_epoch: int = eqx.field(static=True)
    noisy: jax.Array  # (n_epochs,) 1.0 in sampling epochs, 0.0 in exploration
    momentum: float = eqx.field(static=True, default=0.0)
    cycles: int = eqx.field(static=True, default=1)

    def init(self, target: Target, position: PyTree) -> SGMCMCState:
        return init(position, self.momentum)

    def step(self, target: Target, key, state: SGMCMCState, batch: Data, step_index) -> tuple:
        def loss(p):
            return -target.minibatch_log_joint(p, batch) / target.n

        value, grads = jax.value_and_grad(loss)(state.position)
        schedule = step_size_schedule(self.learning_rate, self.total_steps, self.cycles)
        noise = self.noisy[step_index // self.steps_per_epoch]
        state = step(
            key,
            state,
            jax.tree.map(lambda g: -target.n * g, grads),
            schedule(step_index) / target.n,
            momentum=self.momentum,
            temperature=target.temperature * noise,
        )
        return state, SGMCMCInfo(value)


def sgld(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    learning_rate: float,
    n_epochs: int,
    batch_size: int | None,
    n_burnin_epochs: int,
    thin_epochs: int = 1,
    momentum: float = 0.0,
    cycles: int = 1,
    explore_fraction: float = 0.8,
    temperature: float = 1.0,
    seed: int = 0,
    run_dir: str | Path | None = None,
    epochs_per_call: int | None = None,
    progress: bool = True,
    likelihood: str | Likelihood = "categorical",
) -> Posterior:
    """SG-MCMC from the model's parameters towards exp((log lik + log prior) / T).

    learning_rate is in map_fit's mean-loss units: the drift is learning_rate * grad(log post)/n
    (the SGD step) and the Langevin step on the full log posterior is eta = learning_rate / n;
    the gradient estimate is (n / batch) * sum_batch log lik + log prior, and the temperature
    scales the injected noise (same stationary law as dividing the log density by T, without
    blowing up the step for cold posteriors). momentum = 0 is SGLD; momentum in (0, 1) is SGHMC
    with friction 1 - momentum. cycles = 1 keeps the step constant and keeps one draw per
    thin_epochs epochs after n_burnin_epochs; cycles > 1 (n_epochs divisible by it) uses the
    cyclical cosine schedule of cSG-MCMC: the first explore_fraction of each cycle runs without
    noise, draws come from the rest (still only after n_burnin_epochs). A chain-kind Posterior:
    stats["loss"] (n_epochs, 1) is the mean minibatch -(log posterior estimate)/n per epoch,
    stats["learning_rate"] (n_epochs, 1) the rate at each epoch's last step; attrs["n_burnin"]
    is n_burnin_epochs and attrs["draw_epochs"] says when each draw was taken.
    run_dir: checkpoint after each block of epochs there; calling again resumes (bit for bit).
    epochs_per_call: epochs per compiled call and checkpoint (default: adapted to ~2 s).
    """
    problem = prepare_epochs(
        model, prior, x, y, likelihood=likelihood, temperature=temperature,
        batch_size=batch_size, n_epochs=max(n_epochs, 1),
    )  # fmt: skip
    kept = _check_settings(
        learning_rate, n_epochs, n_burnin_epochs, thin_epochs, momentum, cycles, explore_fraction
    )
    steps_per_epoch = problem.target.n // problem.batch_size
    noisy = sampling_epochs(n_epochs, cycles, explore_fraction).astype(np.float32)
    engine = SGMCMC(
        learning_rate, n_epochs * steps_per_epoch, steps_per_epoch, jnp.asarray(noisy),
        momentum=momentum, cycles=cycles,
    )  # fmt: skip
    method = "sghmc" if momentum > 0 else "sgld"
    settings = {
        "learning_rate": learning_rate,
        "n_burnin_epochs": n_burnin_epochs,
        "thin_epochs": thin_epochs,
        "momentum": momentum,
        "cycles": cycles,
        "explore_fraction": explore_fraction,
        "seed": seed,
        "draw_epochs": kept.tolist(),
    }
    run, attrs = fit_epochs(
        method, engine, problem, [problem.params], settings,
        seeds=[seed], n_epochs=n_epochs, keep_epochs=kept, run_dir=run_dir, progress=progress,
        epochs_per_call=epochs_per_call,
    )  # fmt: skip
    schedule = step_size_schedule(learning_rate, n_epochs * steps_per_epoch, cycles)
    last_steps = (np.arange(run.completed) + 1) * steps_per_epoch - 1
    draws = [params for _, _, params in sorted(run.draws, key=lambda d: d[0])]
    attrs |= {"n_burnin": n_burnin_epochs, "n_chains": 1, "n_iterations": run.completed}
    return Posterior(
        static=problem.target.static,
        draws=stack_draws(draws) if draws else empty_draws(problem.params),
        stats={
            "loss": run.stats["loss"],
            "learning_rate": np.asarray(schedule(jnp.asarray(last_steps)), np.float32)[:, None],
        },
        attrs=attrs,
        kind="chain",
    )


def _check_settings(
    learning_rate, n_epochs, n_burnin_epochs, thin_epochs, momentum, cycles, explore_fraction
) -> np.ndarray:
    """Validate the SG-MCMC settings; -> the epochs that yield draws."""
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be finite and > 0, got {learning_rate}")
    check_count("n_epochs", n_epochs)
    check_count("n_burnin_epochs", n_burnin_epochs, 0)
    check_count("thin_epochs", thin_epochs)
    check_count("cycles", cycles)
    if not n_burnin_epochs < n_epochs:
        raise ValueError(
            f"need 0 <= n_burnin_epochs < n_epochs, got {n_burnin_epochs=}, {n_epochs=}"
        )
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if n_epochs % cycles:
        raise ValueError(f"cycles must be >= 1 and divide n_epochs={n_epochs}, got {cycles}")
    if not 0 <= explore_fraction < 1:
        raise ValueError(f"explore_fraction must be in [0, 1), got {explore_fraction}")
    # never empty: the last epoch is after burn-in, in a sampling phase and on the grid
    return draw_epochs(n_epochs, n_burnin_epochs, thin_epochs, cycles, explore_fraction)
