"""`mfvi(...)`: mean-field Gaussian variational inference by the reparameterisation trick."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from blackjax.util import generate_gaussian_noise

from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.inference.map import check_learning_rate, make_optimizer
from bnn_shift.inference.minibatch import EpochEngine, EpochProblem, fit_epochs, prepare_epochs
from bnn_shift.inference.posterior import Posterior
from bnn_shift.inference.target import Data, Target
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree

SAMPLE_STREAM = 2**31 - 1  # fold_in index of the final draws, disjoint from epoch indices
CHUNK = 4096  # examples per pass when the final ELBO sums the log-likelihood over all data
# Converged: from the second-to-last quarter of the epochs to the last, q moved less than a KL of
# DRIFT_KL per parameter, in its means and in its sds (root mean squares over the parameters)
DRIFT_KL = 0.01
MEAN_DRIFT_TOL = math.sqrt(2 * DRIFT_KL)  # |change of a mean| / sd: KL = drift^2 / 2 -> 0.14
STD_DRIFT_TOL = math.sqrt(DRIFT_KL)  # |change of a log-sd|: KL ~ drift^2 -> 0.1
MIN_WINDOW = 2  # epochs per window; with fewer (under 8 epochs) there is no check


class MeanField(NamedTuple):
    """q(theta) = N(mean, softplus(raw_std)^2), independently per parameter."""

    mean: PyTree
    raw_std: PyTree

    @property
    def std(self) -> PyTree:
        return jax.tree.map(jax.nn.softplus, self.raw_std)

    def sample(self, key: jax.Array) -> PyTree:
        """theta = mean + std * eps, eps ~ N(0, I): differentiable in (mean, raw_std)."""
        eps = generate_gaussian_noise(key, self.mean)  # one RNG call: compiles much faster
        return jax.tree.map(lambda m, s, e: m + s * e, self.mean, self.std, eps)

    def entropy(self) -> jax.Array:
        """-E_q[log q], in closed form."""
        const = 0.5 * (1.0 + math.log(2 * math.pi))
        return sum(jnp.sum(jnp.log(s) + const) for s in jax.tree.leaves(self.std))


def init_mean_field(params: PyTree, init_std: float) -> MeanField:
    """q centred on `params` with every standard deviation equal to init_std."""
    raw = math.log(math.expm1(init_std))  # softplus^-1
    return MeanField(params, jax.tree.map(lambda p: jnp.full_like(p, raw), params))


class Drift(NamedTuple):
    """How far q moved at the end of a fit, between its averages over the epoch ends of the
    last `window` epochs and of the `window` epochs before (means averaged, and log-sds):
    mean: root mean square over the parameters of |change of the mean| / sd (sd: the last
        window's average, geometric); mean_max: the largest of those;
    std: root mean square over the parameters of |change of the log-sd| (a relative change of
        the sd); std_max: the largest of those."""

    mean: float
    std: float
    mean_max: float
    std_max: float
    window: int

    @property
    def converged(self) -> bool:
        """q's means moved by less than MEAN_DRIFT_TOL of their sds (RMS) and its log-sds by
        less than STD_DRIFT_TOL (RMS): each under a KL of DRIFT_KL per parameter."""
        return self.mean < MEAN_DRIFT_TOL and self.std < STD_DRIFT_TOL


def window_bounds(n_epochs: int) -> tuple[int, int] | None:
    """-> (first epoch of the window before, first epoch of the last window) for windows of a
    quarter of the epochs; None when a quarter is shorter than MIN_WINDOW epochs."""
    window = n_epochs // 4
    if window < MIN_WINDOW:
        return None
    return n_epochs - 2 * window, n_epochs - window


def mean_log_std(q: MeanField) -> tuple[PyTree, PyTree]:
    """(means, log-sds) of q, the coordinates whose drift the convergence check measures."""
    return q.mean, jax.tree.map(jnp.log, q.std)


def q_drift(
    before: tuple[PyTree, PyTree],
    last: tuple[PyTree, PyTree],
    ref: tuple[PyTree, PyTree],
    window: int,
) -> Drift:
    """Sums of (mean, log sd) - ref over the epoch ends of two windows of `window` epochs ->
    Drift."""
    (m0, s0), (m1, s1) = jax.tree.map(lambda a: a / window, (before, last))
    sd = jax.tree.map(lambda s, r: jnp.exp(s + r), s1, ref[1])  # the last window's
    mean = jax.tree.map(lambda a, b, sd: jnp.ravel(jnp.abs(b - a) / sd), m0, m1, sd)
    std = jax.tree.map(lambda a, b: jnp.ravel(jnp.abs(b - a)), s0, s1)
    mean, std = (jnp.concatenate(jax.tree.leaves(d)) for d in (mean, std))
    rms = [float(jnp.sqrt(jnp.mean(d**2))) for d in (mean, std)]
    return Drift(*rms, float(jnp.max(mean)), float(jnp.max(std)), window)


def convergence_attrs(drift: Drift | None) -> dict:
    """attrs entries for a Drift (None when there were too few epochs to measure one); warns
    when q was still moving or could not be checked."""
    if drift is None:
        warnings.warn(
            f"MFVI ran fewer than {4 * MIN_WINDOW} epochs, too few to check that q stopped "
            "moving; run more epochs",
            UserWarning,
            stacklevel=3,
        )
    elif not drift.converged:
        warnings.warn(
            f"MFVI had not converged: between q averaged over the last {drift.window} epochs and "
            f"over the {drift.window} before, its means moved {drift.mean:.3g} sds and its "
            f"log-sds {drift.std:.3g} (root mean square over the parameters; converged below "
            f"{MEAN_DRIFT_TOL:.2g} and {STD_DRIFT_TOL:.2g}); run more epochs or raise the "
            "learning rate",
            UserWarning,
            stacklevel=3,
        )
    names = ("q_mean_drift", "q_std_drift", "q_mean_drift_max", "q_std_drift_max", "drift_window")
    numbers = dict.fromkeys(names) if drift is None else dict(zip(names, drift))
    return {"elbo_converged": None if drift is None else drift.converged, **numbers}


class MFVIState(NamedTuple):
    """q, the optimiser's state, and the convergence check's running sums (module docstring of
    `mfvi`): (mean, log sd) - ref over the window before and the last window."""

    q: MeanField
    opt_state: optax.OptState
    ref: tuple[PyTree, PyTree]  # (mean, log sd) of q at the end of the first window's start
    before: tuple[PyTree, PyTree]
    last: tuple[PyTree, PyTree]

    @property
    def position(self) -> PyTree:
        return self.q.mean


class MFVIInfo(NamedTuple):
    loss: jax.Array  # -(tempered ELBO estimate) / n


class MFVI(EpochEngine):
    """Adam (cosine-decayed learning rate over n_steps) on the reparameterised tempered ELBO
    with one draw per step; window_starts: the epochs where the convergence check's two
    windows start (None: no check)."""

    learning_rate: jax.Array = eqx.field(converter=lambda r: jnp.asarray(r, jnp.float32))
    n_steps: int = eqx.field(static=True)
    init_std: float = eqx.field(static=True)
    window_starts: tuple[int, int] | None = eqx.field(static=True)

    def _optax(self) -> optax.GradientTransformation:
        return make_optimizer("adam", self.learning_rate, self.n_steps)

    def init(self, target: Target, position: PyTree) -> MFVIState:
        q = init_mean_field(position, self.init_std)
        zeros = jax.tree.map(jnp.zeros_like, mean_log_std(q))
        return MFVIState(q, self._optax().init(q), zeros, zeros, zeros)

    def step(self, target: Target, key, state: MFVIState, batch: Data, step) -> tuple:
        def loss(q: MeanField):
            elbo = target.minibatch_logdensity(q.sample(key), batch) + q.entropy()
            return -elbo / target.n

        value, grads = jax.value_and_grad(loss)(state.q)
        updates, opt_state = self._optax().update(grads, state.opt_state, state.q)
        q = optax.apply_updates(state.q, updates)
        return state._replace(q=q, opt_state=opt_state), MFVIInfo(value)

    def end_epoch(self, target: Target, state: MFVIState, epoch) -> MFVIState:
        """Add q's (mean, log sd) - ref to the running sum of the window the epoch is in."""
        if self.window_starts is None:
            return state
        first, second = self.window_starts
        now = mean_log_std(state.q)
        ref = jax.tree.map(lambda r, a: jnp.where(epoch == first, a, r), state.ref, now)

        def add(total, window):
            inside = (epoch >= window[0]) & (epoch < window[1])
            return jax.tree.map(lambda t, a, r: t + jnp.where(inside, a - r, 0.0), total, now, ref)

        before = add(state.before, (first, second))
        last = add(state.last, (second, jnp.iinfo(jnp.int32).max))
        return state._replace(ref=ref, before=before, last=last)


def mfvi(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    n_epochs: int,
    batch_size: int | None = None,
    learning_rate: float,
    n_samples_predict: int = 32,
    init_std: float = 1e-3,
    temperature: float = 1.0,
    seed: int = 0,
    run_dir: str | Path | None = None,
    epochs_per_call: int | None = None,
    progress: bool = True,
    likelihood: str | Likelihood = "categorical",
) -> Posterior:
    """Fit q = N(mu, diag sigma^2) over all parameters by maximising the tempered ELBO
    (E_q[log lik] + E_q[log prior]) / temperature + H[q], so q targets
    (lik * prior)^(1/temperature) (temperature 1: the posterior; a Gaussian posterior's
    variances scale by the temperature); -> a Posterior of n_samples_predict draws from q.

    q starts at the model's parameters with sigma = init_std (sigma = softplus(rho)). Each step
    takes one reparameterised draw: (n / batch) * sum_batch log lik + log prior at the draw
    (any prior, Monte Carlo), over the temperature, plus the closed-form Gaussian entropy,
    divided by n; Adam with map_fit's cosine-decayed learning rate.

    Returns a Posterior with
        variational: {"mean": mu, "std": sigma}, params pytrees of the final q.
        stats["neg_elbo"]: (n_epochs,) per-epoch mean of the objective's estimate, negated,
            per example.
        attrs["elbo"]: the objective at the final q, averaged over the n_samples_predict draws
            on the full data set (at temperature 1 the ELBO, a lower bound on log evidence).
        attrs["elbo_converged"]: whether q had stopped moving (below), None below 8 epochs;
            when False a UserWarning asks for more epochs or a larger learning rate.
            attrs["q_mean_drift"] and ["q_std_drift"] hold the drifts it is judged on,
            ["q_mean_drift_max"] and ["q_std_drift_max"] the worst single parameter's, and
            ["drift_window"] the epochs per quarter.

    Convergence check: q's means and log-sds are averaged over the epoch ends of the last
    quarter of the epochs and of the quarter before (two running sums, no history); the fit
    counts as converged when, between the two averages, the means moved by less than
    MEAN_DRIFT_TOL = 0.14 of q's sd and the log-sds by less than STD_DRIFT_TOL = 0.1 (a 10%
    change of the sd), both as root mean squares over the parameters. Why:
    - It asks whether q itself still moves, in q's own units: a drift counts as small when it
      is small against the uncertainty q reports. The two tolerances are the same KL between
      the two quarters' q, DRIFT_KL = 0.01 nats per parameter (a mean shift of d sds costs
      d^2 / 2, a log-sd change of e about e^2).
    - At the optimum q still jitters (one-sample gradients), less and less as the cosine step
      shrinks. The jitter is independent per parameter, so its root mean square does not grow
      with their number. At the exact optimum of conjugate problems with 4, 160 and 1,600
      parameters (3,000 epochs at learning rate 0.03) the mean drift reads 0.01-0.11 (25 seeds
      of 4 parameters) and 0.05-0.065 (160 or 1,600), the sd drift 0.01-0.05. Whole-q sums
      grow with the parameters instead: the ELBO's rise as the jitter dies out reads "not
      converged" at the optimum with 160 parameters (3.8-4.7 standard errors, after 3,000 or
      6,000 epochs alike). So, slowly, does the worst single drift (about 0.2 at 4, 160 and
      1,600 parameters; 0.6-0.8 for a 1,210-parameter MLP on digits), which is reported but
      not judged.
    - A fit still on its way moves coherently: q starts init_std wide and its sds grow
      together. The conjugate fits stopped short (300 epochs, or 3,000 at learning rate 0.003,
      sds 60-80% short of the optimum's) read an sd drift of 0.34.
    - The cosine step freezes q at the end wherever it is, so the check sees only part of
      the remaining way: under a steady push Adam moves a coordinate by about the learning
      rate per step, and the drift between the two quarters is then 8% of the whole run's
      movement. A run whose learning rate was too small to get anywhere is caught by its
      means instead, as those steps are many of q's still-narrow sds (mean drift 1-15 at
      learning rates 1e-3 to 1e-4 on the conjugate problem). A lag confined to a few
      parameters is diluted in the root mean square (the _max numbers show it), and a slow
      approach can pass: on digits, 500 epochs pass with q's median sd 15% short of 2,000's.
    """
    problem = prepare_epochs(
        model, prior, x, y, likelihood=likelihood, temperature=temperature,
        batch_size=batch_size, n_epochs=n_epochs,
    )  # fmt: skip
    if n_samples_predict < 1:
        raise ValueError(f"n_samples_predict must be >= 1, got {n_samples_predict}")
    if not (math.isfinite(init_std) and init_std > 0):
        raise ValueError(f"init_std must be finite and > 0, got {init_std}")
    check_learning_rate(learning_rate)
    steps = n_epochs * (problem.target.n // problem.batch_size)
    bounds = window_bounds(n_epochs)
    engine = MFVI(learning_rate, steps, init_std, bounds)
    settings = {
        "optimizer": "adam",
        "learning_rate": learning_rate,
        "n_samples_predict": n_samples_predict,
        "init_std": init_std,
        "seed": seed,
    }
    run, attrs = fit_epochs(
        "mfvi", engine, problem, [problem.params], settings,
        seeds=[seed], n_epochs=n_epochs, run_dir=run_dir, progress=progress,
        epochs_per_call=epochs_per_call,
    )  # fmt: skip
    state = jax.tree.map(lambda a: a[0], run.state)
    key = jax.random.fold_in(jax.random.key(seed), SAMPLE_STREAM)
    draws, elbo = _draws_and_elbo(state.q, key, n_samples_predict, problem)
    drift = None
    if bounds is not None and run.completed == n_epochs:
        drift = q_drift(state.before, state.last, state.ref, n_epochs // 4)
    return Posterior(
        static=problem.target.static,
        draws=draws,
        stats={"neg_elbo": run.stats["loss"][:, 0]},
        attrs=attrs | {"elbo": elbo, **convergence_attrs(drift)},
        variational={
            "mean": jax.tree.map(np.asarray, state.q.mean),
            "std": jax.tree.map(np.asarray, state.q.std),
        },
        kind="variational",
    )


def _draws_and_elbo(
    q: MeanField, key: jax.Array, n_draws: int, problem: EpochProblem
) -> tuple[PyTree, float]:
    """n_draws draws from q (leading axis) and the Monte Carlo (tempered) ELBO over them, the
    full-data log-likelihood summed in chunks of CHUNK examples."""
    target = problem.target
    draws, log_prior, entropy = _draw(q, key, target, n_draws)
    x, y = problem.data
    log_joint = log_prior
    for i in range(0, len(x), CHUNK):
        log_joint = log_joint + _chunk_loglik(draws, target, (x[i : i + CHUNK], y[i : i + CHUNK]))
    return jax.tree.map(np.asarray, draws), float(log_joint / target.temperature + entropy)


@eqx.filter_jit
def _draw(q: MeanField, key: jax.Array, target: Target, n_draws: int):
    draws = jax.vmap(q.sample)(jax.random.split(key, n_draws))
    return draws, jnp.mean(jax.lax.map(target.prior.log_prob, draws)), q.entropy()


@eqx.filter_jit
def _chunk_loglik(draws: PyTree, target: Target, chunk: Data) -> jax.Array:
    """The mean over draws of the chunk's summed log-likelihood."""
    return jnp.mean(jax.lax.map(lambda p: jnp.sum(target.loglik(p, chunk)), draws))
