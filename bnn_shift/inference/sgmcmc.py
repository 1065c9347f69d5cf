"""`sgld(...)`: stochastic-gradient Langevin dynamics (SGLD / SGHMC, optionally cyclical)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.sgmcmc.diffusions import overdamped_langevin
from blackjax.util import generate_gaussian_noise
from tqdm.auto import tqdm

from bnn_shift.inference.likelihood import Likelihood, resolve_likelihood
from bnn_shift.inference.map import check_training_inputs
from bnn_shift.inference.posterior import Posterior, stack_draws
from bnn_shift.models.params import PyTree, partition_params
from bnn_shift.priors.base import Prior


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
    noise, draws come from the rest (still only after n_burnin_epochs). stats["loss"]
    (n_epochs,) is the mean minibatch -(log posterior estimate)/n, stats["learning_rate"] the
    rate at each epoch's last step; attrs["draw_epochs"] says when each draw was taken.
    """
    params, static = partition_params(model)
    lik = resolve_likelihood(likelihood)
    x, y, batch = check_training_inputs(model, prior, x, y, batch_size, max(n_epochs, 1), lik)
    n = len(x)
    kept = _check_settings(
        learning_rate,
        n_epochs,
        n_burnin_epochs,
        thin_epochs,
        momentum,
        cycles,
        explore_fraction,
        temperature,
    )
    steps_per_epoch = n // batch
    schedule = step_size_schedule(learning_rate, n_epochs * steps_per_epoch, cycles)
    noisy = sampling_epochs(n_epochs, cycles, explore_fraction).astype(np.float32)

    def loss_fn(p, xb, yb):
        loglik = jnp.sum(lik.loglik(p, static, xb, yb)) * (n / xb.shape[0])
        return -(loglik + prior.log_prob(p)) / n

    @jax.jit
    def epoch(state, key, e, xs, ys, order, noise):  # order (steps_per_epoch, batch)
        def one_step(state, inputs):
            k, idx, i = inputs
            loss, grads = jax.value_and_grad(loss_fn)(state.position, xs[idx], ys[idx])
            logpost_grad = jax.tree.map(lambda g: -n * g, grads)
            eta = schedule(e * steps_per_epoch + i) / n
            state = step(
                k, state, logpost_grad, eta, momentum=momentum, temperature=temperature * noise
            )
            return state, loss

        keys = jax.random.split(jax.random.fold_in(key, e), steps_per_epoch)
        inputs = (keys, order, jnp.arange(steps_per_epoch))
        state, losses = jax.lax.scan(one_step, state, inputs)
        return state, jnp.mean(losses)

    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    xs, ys = jnp.asarray(x), jnp.asarray(y)
    state = init(params, momentum)
    method = "sghmc" if momentum > 0 else "sgld"
    keep = set(kept.tolist())
    losses, draws = [], []
    started = time.perf_counter()
    for e in tqdm(range(n_epochs), desc=method.upper(), disable=not progress, unit="epoch"):
        order = rng.permutation(n)[: steps_per_epoch * batch].reshape(steps_per_epoch, batch)
        state, loss = epoch(state, key, e, xs, ys, order, noisy[e])
        losses.append(float(loss))
        if not np.isfinite(losses[-1]):
            raise FloatingPointError(
                f"{method.upper()} loss became {losses[-1]} at epoch {e + 1}; "
                "lower the learning rate"
            )
        if e in keep:
            draws.append(jax.device_get(state.position))
    last_steps = (np.arange(n_epochs) + 1) * steps_per_epoch - 1
    attrs = {
        "method": method,
        "learning_rate": learning_rate,
        "n_epochs": n_epochs,
        "batch_size": batch,
        "n_burnin_epochs": n_burnin_epochs,
        "thin_epochs": thin_epochs,
        "momentum": momentum,
        "cycles": cycles,
        "explore_fraction": explore_fraction,
        "temperature": temperature,
        "seed": seed,
        "n_train": n,
        "prior": prior.describe(),
        "likelihood": lik.describe(),
        "draw_epochs": kept.tolist(),
        "seconds": time.perf_counter() - started,
    }
    return Posterior(
        static=static,
        draws=stack_draws(draws),
        stats={
            "loss": np.asarray(losses),
            "learning_rate": np.asarray(schedule(jnp.asarray(last_steps)), np.float32),
        },
        attrs=attrs,
    )


def _check_settings(
    learning_rate,
    n_epochs,
    n_burnin_epochs,
    thin_epochs,
    momentum,
    cycles,
    explore_fraction,
    temperature,
) -> np.ndarray:
    """Validate the SG-MCMC settings; -> the epochs that yield draws."""
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be finite and > 0, got {learning_rate}")
    if n_epochs < 1:
        raise ValueError(f"n_epochs must be >= 1, got {n_epochs}")
    if not 0 <= n_burnin_epochs < n_epochs:
        raise ValueError(
            f"need 0 <= n_burnin_epochs < n_epochs, got {n_burnin_epochs=}, {n_epochs=}"
        )
    if thin_epochs < 1:
        raise ValueError(f"thin_epochs must be >= 1, got {thin_epochs}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    if cycles < 1 or n_epochs % cycles:
        raise ValueError(f"cycles must be >= 1 and divide n_epochs={n_epochs}, got {cycles}")
    if not 0 <= explore_fraction < 1:
        raise ValueError(f"explore_fraction must be in [0, 1), got {explore_fraction}")
    # never empty: the last epoch is after burn-in, in a sampling phase and on the grid
    return draw_epochs(n_epochs, n_burnin_epochs, thin_epochs, cycles, explore_fraction)
