"""SWAG and MultiSWAG as a minibatch engine: SGD iterates summarised by a Gaussian.

SWAG (Maddox et al. 2019) runs SGD with momentum at a constant learning rate from a trained
solution and, once per epoch from `collect_from` on, folds the iterate into running first and
second moments and a ring buffer of its last `rank` deviations from the running mean. The
approximate posterior is N(mean, (diag(second - mean^2) + D D^T / (rank - 1)) / 2). MultiSWAG
(Wilson & Izmailov 2020) is several SWAG runs from different starts, here side by side as the
minibatch driver's members. No batch-norm refresh is needed: the models here use LayerNorm or
FRN, whose statistics do not depend on the weights' batch history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bnn_shift.inference.ensemble import member_seeds, member_starts
from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.inference.map import check_learning_rate
from bnn_shift.inference.minibatch import EpochEngine, fit_epochs, prepare_epochs
from bnn_shift.inference.posterior import Posterior
from bnn_shift.inference.target import Data, Target
from bnn_shift.models.params import partition_params
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree

SAMPLE_STREAM = 2**31 - 1  # fold_in index of the final draws


class SWAGState(NamedTuple):
    position: PyTree
    opt_state: optax.OptState
    n_collected: jax.Array  # int: iterates folded into the moments
    mean: PyTree
    second_moment: PyTree
    deviations: PyTree  # leaves (rank, ...): the last `rank` iterates minus the running mean


class SWAGInfo(NamedTuple):
    loss: jax.Array  # -(minibatch log joint) / n


class SWAG(EpochEngine):
    """SGD with momentum at a constant learning rate on -(log joint) / n; the iterate at the
    end of every epoch from collect_from on enters the moments."""

    learning_rate: jax.Array = eqx.field(converter=lambda r: jnp.asarray(r, jnp.float32))
    collect_from: int = eqx.field(static=True)
    rank: int = eqx.field(static=True, default=20)
    momentum: float = eqx.field(static=True, default=0.9)

    def _optax(self) -> optax.GradientTransformation:
        return optax.sgd(self.learning_rate, momentum=self.momentum)

    def init(self, target: Target, position: PyTree) -> SWAGState:
        zeros = jax.tree.map(jnp.zeros_like, position)
        buffer = jax.tree.map(lambda p: jnp.zeros((self.rank, *p.shape), p.dtype), position)
        count = jnp.asarray(0, jnp.int32)
        return SWAGState(position, self._optax().init(position), count, zeros, zeros, buffer)

    def step(self, target: Target, key, state: SWAGState, batch: Data, step) -> tuple:
        def loss(p):
            return -target.minibatch_log_joint(p, batch) / target.n

        value, grads = jax.value_and_grad(loss)(state.position)
        updates, opt_state = self._optax().update(grads, state.opt_state, state.position)
        moved = optax.apply_updates(state.position, updates)
        return state._replace(position=moved, opt_state=opt_state), SWAGInfo(value)

    def end_epoch(self, target: Target, state: SWAGState, epoch) -> SWAGState:
        rank = self.rank
        return jax.lax.cond(
            epoch >= self.collect_from, lambda s: collect(s, rank), lambda s: s, state
        )


def collect(state: SWAGState, rank: int) -> SWAGState:
    """Fold the current iterate into the running moments and the deviation buffer."""
    n = state.n_collected + 1
    weight = 1.0 / n.astype(jnp.float32)
    mean = jax.tree.map(lambda m, p: m + (p - m) * weight, state.mean, state.position)
    second = jax.tree.map(
        lambda s, p: s + (p * p - s) * weight, state.second_moment, state.position
    )
    slot = (n - 1) % rank
    deviations = jax.tree.map(
        lambda d, p, m: d.at[slot].set(p - m), state.deviations, state.position, mean
    )
    return state._replace(n_collected=n, mean=mean, second_moment=second, deviations=deviations)


def swag_sample(state: SWAGState, key: jax.Array, rank: int) -> PyTree:
    """One draw from one member's SWAG Gaussian: mean + diag^(1/2) z1 / sqrt(2) + D z2 /
    sqrt(2 (K - 1)), K = min(rank, iterates collected) deviation columns in use."""
    k = jnp.minimum(state.n_collected, rank)
    leaves, treedef = jax.tree.flatten(state.mean)
    keys = jax.random.split(key, len(leaves) + 1)
    z2 = jax.random.normal(keys[-1], (rank,)) * (jnp.arange(rank) < k)
    scale = 1.0 / jnp.sqrt(2.0 * jnp.maximum(k - 1, 1))

    def one(key, mean, second, deviation):
        variance = jnp.maximum(second - mean**2, 0.0)
        z1 = jax.random.normal(key, mean.shape, mean.dtype)
        low_rank = jnp.tensordot(z2, deviation, axes=1)
        return mean + jnp.sqrt(variance / 2.0) * z1 + scale * low_rank

    flat = zip(
        keys[:-1], leaves, jax.tree.leaves(state.second_moment), jax.tree.leaves(state.deviations)
    )
    return jax.tree.unflatten(treedef, [one(*args) for args in flat])


def swag_std(state: SWAGState, rank: int) -> PyTree:
    """Marginal standard deviations of one member's SWAG Gaussian (diagonal and low rank)."""
    k = jnp.minimum(state.n_collected, rank)
    used = (jnp.arange(rank) < k).astype(jnp.float32)

    def one(mean, second, deviation):
        low_rank = jnp.tensordot(used, deviation**2, axes=1) / jnp.maximum(k - 1, 1)
        return jnp.sqrt((jnp.maximum(second - mean**2, 0.0) + low_rank) / 2.0)

    return jax.tree.map(one, state.mean, state.second_moment, state.deviations)


def swag(
    model: PyTree | Sequence[PyTree],
    prior: Prior,
    x,
    y,
    *,
    learning_rate: float,
    n_epochs: int,
    collect_from: int | None = None,
    batch_size: int | None = None,
    rank: int = 20,
    momentum: float = 0.9,
    n_samples: int = 32,
    n_members: int | None = None,
    init_fn: Callable[[jax.Array], PyTree] | None = None,
    seed: int = 0,
    run_dir: str | Path | None = None,
    epochs_per_call: int | None = None,
    progress: bool = True,
    likelihood: str | Likelihood = "categorical",
    whiten_first_layer: bool = False,
) -> Posterior:
    """SWAG from `model`'s parameters (a trained solution, e.g. map_fit's), or MultiSWAG from
    several starts given as `deep_ensemble` takes them (a sequence of models, or init_fn with
    n_members; then each member should be trained first, e.g. by deep_ensemble).

    SGD (momentum) at the constant learning_rate (map_fit's mean-loss units) for n_epochs;
    the iterates at the ends of epochs collect_from .. n_epochs - 1 (default: the second half)
    give each member's mean, diagonal and rank-`rank` deviation covariance. Returns a Posterior
    of kind "variational" with n_samples draws per member (draw_chain = member),
    variational={"mean", "std"} of member 0, stats["loss"] (n_epochs,) the members' mean loss.
    whiten_first_layer: run SGD and collect the moments in a dense EmpCov first layer's
    whitened coordinates (`map_fit`'s; at a learning rate SGD survives, the raw coordinates'
    stiff prior directions, variance eps, make it diverge). The Gaussian is then the one over
    whitened weights, and draws are mapped back to the weights (a linear map: still Gaussian);
    variational then holds the mean only (per-weight sds of the mapped layer are not kept).
    """
    if isinstance(model, list | tuple) or init_fn is not None:
        starts, static, how = member_starts(model, n_members, init_fn, seed)
    else:
        params, static = partition_params(model)
        starts, how = [params], "model"
    collect_from = n_epochs // 2 if collect_from is None else collect_from
    _check(learning_rate, n_epochs, collect_from, rank, momentum, n_samples)
    problem = prepare_epochs(
        eqx.combine(starts[0], static), prior, x, y,
        likelihood=likelihood, batch_size=batch_size, n_epochs=n_epochs,
        whiten_first_layer=whiten_first_layer,
    )  # fmt: skip
    engine = SWAG(learning_rate, collect_from, rank, momentum)
    seeds = member_seeds(seed, len(starts))
    settings = {
        "learning_rate": learning_rate,
        "momentum": momentum,
        "collect_from": collect_from,
        "rank": rank,
        "n_samples": n_samples,
        "n_members": len(starts),
        "init": how,
        "seed": seed,
    }
    method = "multiswag" if len(starts) > 1 else "swag"
    run, attrs = fit_epochs(
        method, engine, problem, starts, settings,
        seeds=seeds, n_epochs=n_epochs, run_dir=run_dir, progress=progress,
        epochs_per_call=epochs_per_call,
    )  # fmt: skip
    draws = _draw(
        run.state, jax.random.fold_in(jax.random.key(seed), SAMPLE_STREAM), rank, n_samples
    )
    draws = problem.params_of(jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), draws))
    first = jax.tree.map(lambda a: a[0], run.state)
    mean = problem.params_of(jax.tree.map(lambda a: a[None], first.mean))
    variational = {"mean": jax.tree.map(lambda a: np.asarray(a[0]), mean)}
    if problem.target.whitening is None:
        variational["std"] = jax.tree.map(np.asarray, swag_std(first, rank))
    return Posterior(
        static=problem.target.static,
        draws=jax.tree.map(np.asarray, draws),
        draw_chain=np.repeat(np.arange(len(starts), dtype=np.int32), n_samples),
        stats={"loss": run.stats["loss"].mean(axis=1)},
        attrs=attrs | {"n_collected": int(first.n_collected)},
        variational=variational,
        kind="variational",
    )


@eqx.filter_jit
def _draw(state: SWAGState, key: jax.Array, rank: int, n_samples: int) -> PyTree:
    """(n_members, n_samples, ...) draws, each member from its own Gaussian."""
    members = state.n_collected.shape[0]
    keys = jax.random.split(key, (members, n_samples))
    one_member = jax.vmap(swag_sample, in_axes=(None, 0, None))
    return jax.vmap(one_member, in_axes=(0, 0, None))(state, keys, rank)


def _check(learning_rate, n_epochs, collect_from, rank, momentum, n_samples) -> None:
    check_learning_rate(learning_rate)
    if not 0 <= collect_from < n_epochs:
        raise ValueError(
            f"need 0 <= collect_from < n_epochs so that iterates are collected, got "
            f"{collect_from=}, {n_epochs=}"
        )
    if rank < 2:
        raise ValueError(f"rank (deviation columns) must be >= 2, got {rank}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
