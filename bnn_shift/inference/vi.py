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
RISE_SE = 3.0  # a last-window ELBO gain above this many standard errors means "still rising"
MIN_WINDOW = 2  # epochs per window: fewer cannot estimate the per-epoch noise


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


class ElboTrend(NamedTuple):
    """How the ELBO moved at the end of a fit: its mean per example over the last `window`
    epochs minus its mean over the `window` epochs before, and that difference's standard
    error (from the per-epoch Monte Carlo scatter in the two windows)."""

    improvement: float
    se: float
    window: int

    @property
    def converged(self) -> bool:
        """False while the ELBO still rises by more than RISE_SE standard errors."""
        return self.improvement <= RISE_SE * self.se


def elbo_trend(neg_elbo: np.ndarray) -> ElboTrend | None:
    """(n_epochs,) per-epoch negative ELBO -> the last quarter of the fit against the quarter
    before it; None when the quarters are shorter than MIN_WINDOW epochs."""
    window = len(neg_elbo) // 4
    if window < MIN_WINDOW:
        return None
    before, last = -neg_elbo[-2 * window : -window], -neg_elbo[-window:]
    se = math.sqrt((np.var(before, ddof=1) + np.var(last, ddof=1)) / window)
    return ElboTrend(float(np.mean(last) - np.mean(before)), se, window)


def convergence_attrs(trend: ElboTrend | None) -> dict:
    """attrs entries for an ElboTrend (None when there was no trend to measure); warns when
    the ELBO had not stopped improving or could not be checked."""
    if trend is None:
        warnings.warn(
            f"MFVI ran fewer than {4 * MIN_WINDOW} epochs, too few to check that the ELBO "
            "stopped improving; run more epochs",
            UserWarning,
            stacklevel=3,
        )
    elif not trend.converged:
        warnings.warn(
            f"MFVI had not converged: the ELBO's mean over the last {trend.window} epochs is "
            f"{trend.improvement:.3g} +- {trend.se:.2g} (SE) per example above the "
            f"{trend.window} epochs before; run more epochs or raise the learning rate",
            UserWarning,
            stacklevel=3,
        )
    names = ("elbo_improvement", "elbo_improvement_se", "elbo_window")
    numbers = dict.fromkeys(names) if trend is None else dict(zip(names, trend))
    return {"elbo_converged": None if trend is None else trend.converged, **numbers}


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
        attrs["elbo_converged"]: False when the ELBO's mean over the last quarter of the epochs
            still exceeds the quarter before by more than RISE_SE standard errors (then a
            UserWarning asks for more epochs or a larger learning rate), None below 8 epochs;
            attrs["elbo_improvement"] (per example), ["elbo_improvement_se"] and
            ["elbo_window"] (epochs per quarter) hold the numbers.
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
    started = time.perf_counter()
    for e in tqdm(range(n_epochs), desc="MFVI", disable=not progress, unit="epoch"):
        order = rng.permutation(n)[: steps_per_epoch * batch].reshape(steps_per_epoch, batch)
        q, opt_state, loss = epoch(q, opt_state, key, e, xs, ys, order)
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
        **convergence_attrs(elbo_trend(neg_elbo)),
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
