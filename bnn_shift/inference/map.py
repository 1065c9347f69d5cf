"""`map_fit(...)`: maximum a posteriori training with optax, on the same log posterior as HMC."""

from __future__ import annotations

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from bnn_shift.inference.likelihood import CATEGORICAL, Likelihood, resolve_likelihood
from bnn_shift.inference.posterior import Posterior, stack_draws
from bnn_shift.models.params import PyTree, partition_params
from bnn_shift.priors.base import Prior

OPTIMIZERS = ("adam", "sgd")


def make_optimizer(name: str, learning_rate: float, n_steps: int) -> optax.GradientTransformation:
    """Adam or SGD with momentum 0.9, both with a cosine-decayed learning rate."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    schedule = optax.cosine_decay_schedule(learning_rate, decay_steps=max(n_steps, 1))
    if name == "adam":
        return optax.adam(schedule)
    return optax.sgd(schedule, momentum=0.9)


def check_training_inputs(
    model: PyTree,
    prior: Prior,
    x,
    y,
    batch_size: int | None,
    n_epochs: int,
    likelihood: Likelihood = CATEGORICAL,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate data, batch size, epochs and the prior's fit to the model -> (x, y, batch)."""
    x, y = likelihood.check(model, x, y)
    n = len(x)
    batch = n if batch_size is None else int(batch_size)
    if not 1 <= batch <= n:
        raise ValueError(f"batch_size must be between 1 and the data size {n}, got {batch_size}")
    if n_epochs < 1:
        raise ValueError(f"n_epochs must be >= 1, got {n_epochs}")
    jax.eval_shape(prior.log_prob, eqx.filter(model, eqx.is_inexact_array))  # traced, not run
    return x, y, batch


def make_epoch(
    static: PyTree,
    prior: Prior,
    n: int,
    opt: optax.GradientTransformation,
    likelihood: Likelihood = CATEGORICAL,
):
    """(params, opt_state, xs, ys, order (steps, batch)) -> (params, opt_state, mean loss): one
    epoch of minibatch steps on -(log posterior)/n, minibatch likelihoods scaled by n/batch."""

    def loss_fn(p, xb, yb):
        loglik = jnp.sum(likelihood.loglik(p, static, xb, yb)) * (n / xb.shape[0])
        return -(loglik + prior.log_prob(p)) / n

    def epoch(p, opt_state, xs, ys, order):
        def one_step(carry, idx):
            p, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(p, xs[idx], ys[idx])
            updates, opt_state = opt.update(grads, opt_state, p)
            return (optax.apply_updates(p, updates), opt_state), loss

        (p, opt_state), losses = jax.lax.scan(one_step, (p, opt_state), order)
        return p, opt_state, jnp.mean(losses)

    return epoch


def map_fit(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    n_epochs: int = 500,
    batch_size: int | None = None,
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
    likelihood: str | Likelihood = "categorical",
) -> Posterior:
    """Maximise sum_i log p(y_i|x_i, theta) + log p(theta); -> a one-draw `Posterior`.

    The objective is divided by n (a mean loss) so learning rates do not depend on data size;
    minibatches (batch_size < n) rescale their likelihood by n / batch_size. stats["loss"] holds
    the per-epoch mean loss, -(log posterior)/n. likelihood: "categorical" (classifiers),
    "gaussian" or a `Likelihood` such as gaussian_likelihood(noise_std) (regression).
    """
    params, static = partition_params(model)
    lik = resolve_likelihood(likelihood)
    x, y, batch = check_training_inputs(model, prior, x, y, batch_size, n_epochs, lik)
    n = len(x)
    steps_per_epoch = n // batch
    opt = make_optimizer(optimizer, learning_rate, n_epochs * steps_per_epoch)

    epoch = jax.jit(make_epoch(static, prior, n, opt, lik))

    rng = np.random.default_rng(seed)
    xs, ys = jnp.asarray(x), jnp.asarray(y)
    opt_state = opt.init(params)
    losses = []
    started = time.perf_counter()
    for _ in tqdm(range(n_epochs), desc="MAP", disable=not progress, unit="epoch"):
        order = rng.permutation(n)[: steps_per_epoch * batch].reshape(steps_per_epoch, batch)
        params, opt_state, loss = epoch(params, opt_state, xs, ys, jnp.asarray(order))
        losses.append(float(loss))
        if not np.isfinite(losses[-1]):
            raise FloatingPointError(
                f"MAP loss became {losses[-1]} at epoch {len(losses)}; lower the learning rate"
            )
    attrs = {
        "method": "map",
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "n_epochs": n_epochs,
        "batch_size": batch,
        "seed": seed,
        "n_train": n,
        "prior": prior.describe(),
        "likelihood": lik.describe(),
        "seconds": time.perf_counter() - started,
    }
    return Posterior(
        static=static,
        draws=stack_draws([params]),
        stats={"loss": np.asarray(losses)},
        attrs=attrs,
    )
