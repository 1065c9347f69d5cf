"""`mfvi(...)`: mean-field Gaussian variational inference by the reparameterisation trick."""

from __future__ import annotations

import math
import time
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from blackjax.util import generate_gaussian_noise
from tqdm.auto import tqdm

from bnn_shift.inference.likelihood import Likelihood, resolve_likelihood
from bnn_shift.inference.map import check_training_inputs, make_optimizer
from bnn_shift.inference.posterior import Posterior
from bnn_shift.models.params import PyTree, partition_params
from bnn_shift.priors.base import Prior

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


@jax.jit
def _add_q(total: tuple[PyTree, PyTree], q: MeanField, ref: tuple[PyTree, PyTree]):
    """total + (mean, log sd) of q - ref: a running sum in place of a history of q, taken
    relative to q at the start of the windows so that float32 keeps the drift's digits."""
    return jax.tree.map(lambda t, a, r: t + (a - r), total, mean_log_std(q), ref)


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
    params, static = partition_params(model)
    lik = resolve_likelihood(likelihood)
    x, y, batch = check_training_inputs(model, prior, x, y, batch_size, n_epochs, lik)
    n = len(x)
    if n_samples_predict < 1:
        raise ValueError(f"n_samples_predict must be >= 1, got {n_samples_predict}")
    if not (math.isfinite(init_std) and init_std > 0):
        raise ValueError(f"init_std must be finite and > 0, got {init_std}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    steps_per_epoch = n // batch
    opt = make_optimizer("adam", learning_rate, n_epochs * steps_per_epoch)

    def loss_fn(q: MeanField, key, xb, yb):
        theta = q.sample(key)
        loglik = jnp.sum(lik.loglik(theta, static, xb, yb)) * (n / xb.shape[0])
        return -((loglik + prior.log_prob(theta)) / temperature + q.entropy()) / n

    @jax.jit
    def epoch(q, opt_state, key, e, xs, ys, order):  # order (steps_per_epoch, batch)
        def one_step(carry, inputs):
            q, opt_state = carry
            k, idx = inputs
            loss, grads = jax.value_and_grad(loss_fn)(q, k, xs[idx], ys[idx])
            updates, opt_state = opt.update(grads, opt_state, q)
            return (optax.apply_updates(q, updates), opt_state), loss

        keys = jax.random.split(jax.random.fold_in(key, e), steps_per_epoch)
        (q, opt_state), losses = jax.lax.scan(one_step, (q, opt_state), (keys, order))
        return q, opt_state, jnp.mean(losses)

    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    xs, ys = jnp.asarray(x), jnp.asarray(y)
    q = init_mean_field(params, init_std)
    opt_state = opt.init(q)
    losses = []
    bounds = window_bounds(n_epochs)
    sums, ref = [], None  # (mean, log sd) - ref summed over the window before, the last window
    started = time.perf_counter()
    for e in tqdm(range(n_epochs), desc="MFVI", disable=not progress, unit="epoch"):
        order = rng.permutation(n)[: steps_per_epoch * batch].reshape(steps_per_epoch, batch)
        q, opt_state, loss = epoch(q, opt_state, key, e, xs, ys, order)
        if bounds is not None and e in bounds:  # a window starts
            ref = mean_log_std(q) if ref is None else ref
            sums.append(jax.tree.map(jnp.zeros_like, ref))
        if sums:
            sums[-1] = _add_q(sums[-1], q, ref)
        losses.append(float(loss))
        if not np.isfinite(losses[-1]):
            raise FloatingPointError(
                f"MFVI loss became {losses[-1]} at epoch {e + 1}; lower the learning rate"
            )
    draws, elbo = _draws_and_elbo(
        q,
        jax.random.fold_in(key, SAMPLE_STREAM),
        n_samples_predict,
        static,
        prior,
        x,
        y,
        lik,
        temperature,
    )
    neg_elbo = np.asarray(losses)
    attrs = {
        "method": "mfvi",
        "optimizer": "adam",
        "learning_rate": learning_rate,
        "n_epochs": n_epochs,
        "batch_size": batch,
        "n_samples_predict": n_samples_predict,
        "init_std": init_std,
        "temperature": temperature,
        "seed": seed,
        "n_train": n,
        "prior": prior.describe(),
        "likelihood": lik.describe(),
        "elbo": elbo,
        **convergence_attrs(None if bounds is None else q_drift(*sums, ref, n_epochs // 4)),
        "seconds": time.perf_counter() - started,
    }
    return Posterior(
        static=static,
        draws=draws,
        stats={"neg_elbo": neg_elbo},
        attrs=attrs,
        variational={
            "mean": jax.tree.map(np.asarray, q.mean),
            "std": jax.tree.map(np.asarray, q.std),
        },
    )


def _draws_and_elbo(
    q: MeanField,
    key: jax.Array,
    n_draws: int,
    static: PyTree,
    prior: Prior,
    x,
    y,
    likelihood: Likelihood,
    temperature: float,
) -> tuple[PyTree, float]:
    """n_draws draws from q (leading axis) and the Monte Carlo (tempered) ELBO over them, the
    full-data log-likelihood summed in chunks."""

    @jax.jit
    def draw(q, key):
        draws = jax.vmap(q.sample)(jax.random.split(key, n_draws))
        return draws, jnp.mean(jax.lax.map(prior.log_prob, draws)), q.entropy()

    @jax.jit
    def chunk_loglik(draws, xb, yb):  # -> scalar: mean over draws of the chunk's log lik
        return jnp.mean(jax.lax.map(lambda p: jnp.sum(likelihood.loglik(p, static, xb, yb)), draws))

    draws, log_joint, entropy = draw(q, key)
    for i in range(0, len(x), CHUNK):
        log_joint = log_joint + chunk_loglik(draws, x[i : i + CHUNK], y[i : i + CHUNK])
    return jax.tree.map(np.asarray, draws), float(log_joint / temperature + entropy)
