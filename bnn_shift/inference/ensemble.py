"""`deep_ensemble(...)`: independent MAP fits trained side by side by the minibatch driver."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.inference.map import _map_engine
from bnn_shift.inference.minibatch import fit_epochs, prepare_epochs
from bnn_shift.inference.posterior import Posterior
from bnn_shift.models.params import partition_params
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree

DEFAULT_MEMBERS = 5
NOT_A_MODULE = "give an equinox module (e.g. MLP(...)) with init_fn, or a sequence of them"


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
    run_dir: str | Path | None = None,
    epochs_per_call: int | None = None,
    progress: bool = True,
    likelihood: str | Likelihood = "categorical",
    whiten_first_layer: bool = False,
) -> Posterior:
    """Train n_members MAP fits (map_fit's objective and optimizer) from different starts, all
    in one program vmapped over members; -> a Posterior whose draws are the members.

    Starting points: either `model` is a sequence of models of one architecture (one per member;
    n_members defaults to its length), or `model` is one model giving the architecture and
    `init_fn(key) -> model` makes member i from jax.random.key(member_seeds(seed, n)[i])
    (n_members defaults to 5). Member i shuffles minibatches like map_fit(seed=that seed), so
    it is exactly map_fit(init_fn(key(s_i)), ..., seed=s_i) up to vmap's float rounding.
    stats: "loss" (n_epochs,) the mean over members of map_fit's per-epoch loss, and
    "loss_member{i}" (n_epochs,) each member's; draw_chain is the member index.
    whiten_first_layer: as in map_fit.
    """
    starts, static, how = member_starts(model, n_members, init_fn, seed)
    problem = prepare_epochs(
        eqx.combine(starts[0], static), prior, x, y,
        likelihood=likelihood, batch_size=batch_size, n_epochs=n_epochs,
        whiten_first_layer=whiten_first_layer,
    )  # fmt: skip
    engine = _map_engine(problem.target.n, problem.batch_size, n_epochs, optimizer, learning_rate)
    seeds = member_seeds(seed, len(starts))
    settings = {
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "n_members": len(starts),
        "init": how,
        "seed": seed,
        "member_seeds": seeds,
    }
    run, attrs = fit_epochs(
        "deep_ensemble", engine, problem, starts, settings,
        seeds=seeds, n_epochs=n_epochs, run_dir=run_dir, progress=progress,
        epochs_per_call=epochs_per_call,
    )  # fmt: skip
    losses = run.stats["loss"]  # (n_epochs, n_members)
    stats = {"loss": losses.mean(axis=1)} | {
        f"loss_member{i}": losses[:, i] for i in range(len(starts))
    }
    return Posterior(
        static=problem.target.static,
        draws=jax.tree.map(np.asarray, problem.params_of(run.state.position)),
        draw_chain=np.arange(len(starts), dtype=np.int32),
        stats=stats,
        attrs=attrs,
        kind="ensemble",
    )


def member_starts(model, n_members, init_fn, seed) -> tuple[list[PyTree], PyTree, str]:
    """-> (params of each member, the shared static structure, "models" | "init_fn")."""
    if not isinstance(model, list | tuple | eqx.Module):
        raise ValueError(f"model is {model!r}; {NOT_A_MODULE}")
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
    not_modules = [i for i, m in enumerate(models) if not isinstance(m, eqx.Module)]
    if not_modules:
        i = not_modules[0]
        what = "init_fn's model" if how == "init_fn" else f"model {i}"
        raise ValueError(f"{what} is {type(models[i]).__name__}; {NOT_A_MODULE}")
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
