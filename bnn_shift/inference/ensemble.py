"""`deep_ensemble(...)`: independent MAP fits trained side by side in one vmapped program."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from bnn_shift.inference.likelihood import Likelihood, resolve_likelihood
from bnn_shift.inference.map import check_training_inputs, make_epoch, make_optimizer
from bnn_shift.inference.posterior import Posterior, stack_draws
from bnn_shift.models.params import PyTree, partition_params
from bnn_shift.priors.base import Prior

DEFAULT_MEMBERS = 5


def member_seeds(seed: int, n_members: int) -> list[int]:
    """Seeds of the members: disjoint across ensemble seeds for a fixed ensemble size."""
    return [seed * n_members + i for i in range(n_members)]


def deep_ensemble(
    model: PyTree | Sequence[PyTree],
    prior: Prior,
    x,
    y,
    *,
    n_members: int | None = None,
    n_epochs: int,
    batch_size: int | None = None,
    optimizer: str = "adam",
    learning_rate: float,
    init_fn: Callable[[jax.Array], PyTree] | None = None,
    seed: int = 0,
    progress: bool = True,
    likelihood: str | Likelihood = "categorical",
) -> Posterior:
    """Train n_members MAP fits (map_fit's objective and optimizer) from different starts, all
    in one jitted program vmapped over members; -> a Posterior whose draws are the members.

    Starting points: either `model` is a sequence of models of one architecture (one per member;
    n_members defaults to its length), or `model` is one model giving the architecture and
    `init_fn(key) -> model` makes member i from jax.random.key(member_seeds(seed, n)[i])
    (n_members defaults to 5). Member i shuffles minibatches like map_fit(seed=that seed), so
    it is exactly map_fit(init_fn(key(s_i)), ..., seed=s_i) up to vmap's float rounding.
    stats: "loss" (n_epochs,) the mean over members of map_fit's per-epoch loss, and
    "loss_member{i}" (n_epochs,) each member's; draw_chain is the member index.
    """
    starts, static, how = _member_starts(model, n_members, init_fn, seed)
    n_members = len(starts)
    params = starts[0]
    lik = resolve_likelihood(likelihood)
    x, y, batch = check_training_inputs(
        eqx.combine(params, static), prior, x, y, batch_size, n_epochs, lik
    )
    n = len(x)
    steps_per_epoch = n // batch
    opt = make_optimizer(optimizer, learning_rate, n_epochs * steps_per_epoch)

    member_epoch = make_epoch(static, prior, n, opt, lik)
    epoch = jax.jit(jax.vmap(member_epoch, in_axes=(0, 0, None, None, 0)))
    seeds = member_seeds(seed, n_members)
    rngs = [np.random.default_rng(s) for s in seeds]
    xs, ys = jnp.asarray(x), jnp.asarray(y)
    stacked = jax.tree.map(jnp.asarray, stack_draws(starts))  # (n_members, ...)
    opt_state = jax.jit(jax.vmap(opt.init))(stacked)
    losses = []
    started = time.perf_counter()
    for e in tqdm(range(n_epochs), desc="ensemble", disable=not progress, unit="epoch"):
        orders = np.stack(
            [
                r.permutation(n)[: steps_per_epoch * batch].reshape(steps_per_epoch, batch)
                for r in rngs
            ]
        )  # (n_members, steps_per_epoch, batch)
        stacked, opt_state, loss = epoch(stacked, opt_state, xs, ys, jnp.asarray(orders))
        losses.append(np.asarray(loss, np.float64))
        if not np.all(np.isfinite(losses[-1])):
            bad = np.flatnonzero(~np.isfinite(losses[-1])).tolist()
            raise FloatingPointError(
                f"ensemble members {bad} reached a loss of {losses[-1][bad]} at epoch {e + 1}; "
                "lower the learning rate"
            )
    losses = np.stack(losses)  # (n_epochs, n_members)
    attrs = {
        "method": "deep_ensemble",
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "n_epochs": n_epochs,
        "batch_size": batch,
        "n_members": n_members,
        "init": how,
        "seed": seed,
        "member_seeds": seeds,
        "n_train": n,
        "prior": prior.describe(),
        "likelihood": lik.describe(),
        "seconds": time.perf_counter() - started,
    }
    stats = {"loss": losses.mean(axis=1)} | {
        f"loss_member{i}": losses[:, i] for i in range(n_members)
    }
    return Posterior(
        static=static,
        draws=jax.tree.map(np.asarray, stacked),
        draw_chain=np.arange(n_members, dtype=np.int32),
        stats=stats,
        attrs=attrs,
    )


def _member_starts(model, n_members, init_fn, seed) -> tuple[list[PyTree], PyTree, str]:
    """-> (params of each member, the shared static structure, "models" | "init_fn")."""
    if isinstance(model, list | tuple):
        if init_fn is not None:
            raise ValueError("pass either a sequence of models or one model with init_fn, not both")
        if n_members is not None and n_members != len(model):
            raise ValueError(f"n_members={n_members} but {len(model)} models were given")
        models, how = list(model), "models"
    else:
        if init_fn is None:
            raise ValueError(
                "deep_ensemble needs different starting points: pass init_fn(key) -> model "
                "(e.g. lambda key: MLP(..., key=key)) or a sequence of models"
            )
        n_members = DEFAULT_MEMBERS if n_members is None else n_members
        if n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        models = [init_fn(jax.random.key(s)) for s in member_seeds(seed, n_members)]
        models, how = [model, *models], "init_fn"
    if not models:
        raise ValueError("an ensemble needs at least one model")
    parts = [partition_params(m) for m in models]
    params0, static0 = parts[0]
    shapes0 = _signature(params0)
    for i, (p, s) in enumerate(parts[1:], start=1):
        if _signature(p) != shapes0 or not eqx.tree_equal(s, static0):
            what = "init_fn's model" if how == "init_fn" else f"model {i}"
            raise ValueError(f"{what} has a different architecture from the first model")
    starts = [p for p, _ in parts]
    return (starts[1:] if how == "init_fn" else starts), static0, how


def _signature(params: PyTree):
    return jax.tree.structure(params), [(a.shape, a.dtype) for a in jax.tree.leaves(params)]
