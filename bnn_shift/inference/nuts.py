"""`nuts(...)`: BlackJAX NUTS with Stan-style window adaptation, for small models.

The tree depth adapts per iteration, so it is a poor fit for large networks (each iteration may
cost up to 2^max_depth gradients) but a good reference sampler and a way to find step sizes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.base import get_filter_adapt_info_fn
from tqdm.auto import tqdm

from bnn_shift.inference.convergence import check_convergence
from bnn_shift.inference.likelihood import (
    CATEGORICAL,
    Likelihood,
    check_inputs,
    resolve_likelihood,
)
from bnn_shift.inference.posterior import Posterior
from bnn_shift.models.params import PyTree, partition_params
from bnn_shift.priors.base import Prior


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
    eval_sets: Mapping[str, np.ndarray] | None = None,
    progress: bool = True,
    likelihood: str | Likelihood = "categorical",
) -> Posterior:
    """NUTS on the full-batch posterior; every post-warmup state is a draw.

    Warmup adapts the step size and a diagonal mass matrix (BlackJAX `window_adaptation`, with
    its per-step info filtered down to scalars so memory does not grow with the parameters).
    stats: acceptance_rate, diverging, n_steps, energy, each (n_samples, n_chains).
    likelihood: "categorical", "gaussian" or a `Likelihood`; eval_sets need "categorical".
    """
    if n_warmup < 1 or n_samples < 1 or n_chains < 1:
        raise ValueError(
            f"n_warmup, n_samples and n_chains must be >= 1, got "
            f"{n_warmup}, {n_samples}, {n_chains}"
        )
    if not 0 < target_acceptance < 1:
        raise ValueError(f"target_acceptance must lie in (0, 1), got {target_acceptance}")
    params, static = partition_params(model)
    lik = resolve_likelihood(likelihood)
    if eval_sets and lik != CATEGORICAL:
        raise ValueError("eval_sets hold class probabilities: use them with a categorical model")
    x, y = lik.check(model, x, y)
    prior.log_prob(params)
    data = (jnp.asarray(x), jnp.asarray(y))

    def logdensity(p):
        return (jnp.sum(lik.loglik(p, static, *data)) + prior.log_prob(p)) / temperature

    keep_scalars = get_filter_adapt_info_fn(info_keys={"acceptance_rate", "is_divergent"})
    warmup = blackjax.window_adaptation(
        blackjax.nuts,
        logdensity,
        target_acceptance_rate=target_acceptance,
        adaptation_info_fn=keep_scalars,
        max_num_doublings=max_depth,
    )
    sample = _sampler(logdensity, n_samples, max_depth)
    started = time.perf_counter()
    draws, chain_stats, step_sizes = [], [], []
    for chain in tqdm(range(n_chains), desc="NUTS chains", disable=not progress):
        key_warm, key_sample = jax.random.split(jax.random.fold_in(jax.random.key(seed), chain))
        (state, tuned), _ = warmup.run(key_warm, params, num_steps=n_warmup)
        positions, info = sample(
            state, key_sample, tuned["step_size"], tuned["inverse_mass_matrix"]
        )
        draws.append(positions)
        chain_stats.append(info)
        step_sizes.append(float(tuned["step_size"]))

    stats = {k: np.stack([s[k] for s in chain_stats], axis=1) for k in chain_stats[0]}
    all_draws = jax.tree.map(lambda *d: np.concatenate(d), *draws)
    trace = {"log_likelihood": _trace_loglik(all_draws, static, data, n_samples, n_chains, lik)}
    post = Posterior(
        static=static,
        draws=all_draws,
        draw_chain=np.repeat(np.arange(n_chains, dtype=np.int32), n_samples),
        stats=stats,
        trace=trace,
        attrs={
            "method": "nuts",
            "n_warmup": n_warmup,
            "n_burnin": 0,
            "n_chains": n_chains,
            "step_size": float(np.mean(step_sizes)),
            "step_sizes": step_sizes,
            "target_acceptance": target_acceptance,
            "max_depth": max_depth,
            "temperature": temperature,
            "seed": seed,
            "n_train": len(x),
            "prior": prior.describe(),
            "likelihood": lik.describe(),
            "seconds": time.perf_counter() - started,
        },
    )
    for name, xe in (eval_sets or {}).items():
        post.predictions[name] = post.predict_proba(check_inputs(name, xe, x.shape[1:]))
    return check_convergence(post)


def _sampler(logdensity, n_samples: int, max_depth: int):
    """(state, key, step_size, inverse_mass_matrix) -> (positions (n, ...), per-step stats):
    n_samples NUTS steps in one scan, compiled once for every chain."""

    @jax.jit
    def run(state, key, step_size, inverse_mass_matrix):
        kernel = blackjax.nuts(
            logdensity, step_size, inverse_mass_matrix, max_num_doublings=max_depth
        )

        def one(state, key):
            state, info = kernel.step(key, state)
            stats = {
                "acceptance_rate": info.acceptance_rate,
                "diverging": info.is_divergent,
                "n_steps": info.num_integration_steps,
                "energy": info.energy,
            }
            return state, (state.position, stats)

        return jax.lax.scan(one, state, jax.random.split(key, n_samples))[1]

    def sample(state, key, step_size, inverse_mass_matrix):
        positions, stats = run(state, key, step_size, inverse_mass_matrix)
        return jax.tree.map(np.asarray, positions), {k: np.asarray(v) for k, v in stats.items()}

    return sample


def _trace_loglik(
    draws, static, data, n_samples: int, n_chains: int, likelihood: Likelihood
) -> np.ndarray:
    """Train log-likelihood of every draw, (n_samples, n_chains)."""
    total = jax.jit(jax.vmap(lambda p: jnp.sum(likelihood.loglik(p, static, *data))))
    values = np.asarray(total(jax.tree.map(jnp.asarray, draws)))
    return values.reshape(n_chains, n_samples).T
