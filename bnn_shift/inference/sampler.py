"""`hmc(...)`: the driver loop around the HMC kernel (burn-in, model averaging, progress)."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from bnn_shift.inference.hmc import (
    build_kernel,
    default_trajectory_length,
    n_leapfrog_steps,
)
from bnn_shift.inference.likelihood import (
    categorical_loglik,
    check_classification_data,
    predict_probs,
)
from bnn_shift.inference.posterior import Posterior, empty_draws, stack_draws
from bnn_shift.models.params import PyTree, partition_params
from bnn_shift.priors.base import Prior


def hmc(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    step_size: float,
    n_iterations: int = 100,
    n_burnin: int = 10,
    trajectory_length: float | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    eval_sets: Mapping[str, np.ndarray] | None = None,
    max_steps: int = 100_000,
    progress: bool = True,
) -> Posterior:
    """Full-batch HMC for a classifier: burn-in without MH, then MH; accepted states are averaged.

    model: equinox classifier (one example -> logits), the initial position.
    x (n, ...), y (n,): the whole training set; every leapfrog step sees all of it.
    trajectory_length: defaults to (pi/2) * prior.scale * sqrt(T).
    eval_sets: name -> inputs (m, ...) whose model-average probabilities are kept running.
    Interrupting (Ctrl-C) returns the posterior drawn so far.
    """
    if n_iterations < 1 or not 0 <= n_burnin <= n_iterations:
        raise ValueError(
            f"need n_iterations >= 1 and 0 <= n_burnin <= n_iterations, "
            f"got {n_iterations=}, {n_burnin=}"
        )
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    params, static = partition_params(model)
    x, y = check_classification_data(x, y, n_classes=n_outputs(model, x))
    tau = (
        default_trajectory_length(prior, temperature)
        if trajectory_length is None
        else trajectory_length
    )
    n_steps = n_leapfrog_steps(tau, step_size, max_steps)
    prior.log_prob(params)  # fails early, with the prior's message, if rules do not fit the model

    kernel = build_kernel(
        lambda p, data: categorical_loglik(p, static, *data),
        prior,
        params,
        step_size=step_size,
        n_steps=n_steps,
        temperature=temperature,
    )
    data = (jnp.asarray(x), jnp.asarray(y))
    step = jax.jit(kernel.step)
    eval_sets = {
        k: jnp.asarray(check_inputs(k, v, x.shape[1:])) for k, v in (eval_sets or {}).items()
    }
    predict = jax.jit(partial(predict_probs, static=static))

    state = jax.jit(kernel.init)(params, data)
    keys = jax.random.split(jax.random.key(seed), n_iterations)
    draws, stats = [], {k: [] for k in ("accepted", "acceptance_rate", "diverging", "energy", "mh")}
    sums = {k: None for k in eval_sets}
    bar = tqdm(total=n_iterations, desc="HMC", disable=not progress, unit="it")
    started = time.perf_counter()
    try:
        for i in range(n_iterations):
            in_burnin = i < n_burnin
            state, info = step(keys[i], state, data, jnp.asarray(not in_burnin))
            for k in stats:
                stats[k].append(np.asarray(getattr(info, k)))
            if bool(info.accepted) and not in_burnin:
                draws.append(jax.tree.map(np.asarray, state.position))
                for name, xe in eval_sets.items():
                    probs = predict(state.position, x=xe)
                    sums[name] = probs if sums[name] is None else sums[name] + probs
            sampled = stats["acceptance_rate"][n_burnin:]
            bar.set_postfix(
                accept=f"{np.mean(sampled):.2f}" if sampled else "burn-in",
                kept=len(draws),
                diverging=int(np.sum(stats["diverging"])),
            )
            bar.update()
    except KeyboardInterrupt:
        warnings.warn(
            f"HMC interrupted after {len(stats['accepted'])} of {n_iterations} iterations; "
            "returning the draws so far",
            stacklevel=2,
        )
    finally:
        bar.close()

    attrs = {
        "method": "hmc",
        "step_size": step_size,
        "trajectory_length": tau,
        "n_leapfrog_steps": n_steps,
        "n_iterations": n_iterations,
        "n_burnin": n_burnin,
        "temperature": temperature,
        "seed": seed,
        "n_train": len(x),
        "prior": prior.describe(),
        "seconds": time.perf_counter() - started,
    }
    predictions = {k: np.asarray(v / len(draws)) for k, v in sums.items() if v is not None}
    return Posterior(
        static=static,
        draws=stack_draws(draws) if draws else empty_draws(params),
        stats={k: np.asarray(v) for k, v in stats.items()},
        predictions=predictions,
        attrs=attrs,
    )


def check_inputs(name: str, x, feature_shape: tuple[int, ...]) -> np.ndarray:
    """Validate an evaluation input set against the training feature shape."""
    x = np.asarray(x, np.float32)
    if x.shape[1:] != feature_shape:
        raise ValueError(
            f"eval set {name!r} has examples of shape {x.shape[1:]}, training data {feature_shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"eval set {name!r} contains NaN or inf")
    return x


def n_outputs(model: PyTree, x) -> int:
    """Number of logits the model returns for one example of `x` (n, ...)."""
    shape = np.shape(x)
    if len(shape) < 2:
        raise ValueError(f"inputs must be shaped (n_examples, ...), got shape {shape}")
    try:
        out = eqx.filter_eval_shape(model, jax.ShapeDtypeStruct(shape[1:], jnp.float32))
    except (TypeError, ValueError) as err:
        raise ValueError(f"the model cannot take examples of shape {shape[1:]}: {err}") from err
    return int(out.shape[-1])
