"""The minibatch driver: epochs of shuffled minibatch steps for MAP, SG-MCMC, VI and ensembles.

It drives any engine with the minibatch protocol (`EpochEngine`):
    init(target, position) -> state
    step(target, key, state, batch, step) -> (state, info)   (info: NamedTuple with `loss`)
    end_epoch(target, state, epoch) -> state                   (default: unchanged)
    position(state) -> params                                  (the parameters a draw keeps)
over M members side by side (M = 1, or an ensemble's members, vmapped). Member m's epoch e
shuffles with a key made from (seeds[m], e) alone and its steps use keys from the same pair, so
a run is a pure function of its seeds: one compiled call runs a block of epochs, blocks adapt
to about chains.BLOCK_SECONDS, and a run directory checkpoints after each block and resumes
bit-identically after a crash. Full-batch runs (batch = n) keep the data order.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from bnn_shift.inference.chains import (
    check_count,
    iterations_per_call,
    next_block_length,
    scan_until,
    warn_interrupted,
)
from bnn_shift.inference.checkpoint import (
    data_digest,
    load_run_state,
    prefixed,
    save_run_state,
)
from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.inference.target import Data, Target, make_target
from bnn_shift.inference.whitening import find_whitening
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree

SHUFFLE_STREAM, STEP_STREAM = 0, 1  # fold_in indices: a member's shuffles and its step keys


class EpochEngine(eqx.Module):
    """Base of the minibatch engines: subclasses define `init` and `step`."""

    def init(self, target: Target, position: PyTree) -> Any:
        raise NotImplementedError

    def step(
        self, target: Target, key: jax.Array, state: Any, batch: Data, step: jax.Array
    ) -> tuple[Any, NamedTuple]:
        raise NotImplementedError

    def end_epoch(self, target: Target, state: Any, epoch: jax.Array) -> Any:
        """Called after each epoch (e.g. to accumulate diagnostics); default: no change."""
        del target, epoch
        return state

    def position(self, state: Any) -> PyTree:
        """The parameters a kept draw stores."""
        return state.position


@dataclass
class EpochRun:
    """What a run produced; stats are (n_epochs_done, n_members) epoch means of the infos."""

    state: Any  # final engine states, leading member axis (device arrays)
    stats: dict[str, np.ndarray]
    draws: list[tuple[int, int, PyTree]] = field(default_factory=list)  # (epoch, member, params)
    completed: int = 0
    interrupted: bool = False


def check_batch(batch_size: int | None, n: int, n_epochs: int) -> int:
    """The batch size (n for None), checked against the data size; n_epochs >= 1."""
    check_count("n_epochs", n_epochs)
    if batch_size is None:
        return n
    if not isinstance(batch_size, bool) and isinstance(batch_size, int | np.integer):
        if 1 <= batch_size <= n:
            return int(batch_size)
    raise ValueError(f"batch_size must be between 1 and the data size {n}, got {batch_size!r}")


def run_epochs(
    engine: EpochEngine,
    target: Target,
    state: Any,
    data: Data,
    *,
    seeds: Sequence[int],
    n_epochs: int,
    batch_size: int,
    keep_epochs: Sequence[int] = (),
    run_dir: str | Path | None = None,
    fingerprint: dict | None = None,
    progress: bool = True,
    desc: str = "fit",
    block_length: int | None = None,
) -> EpochRun:
    """Run n_epochs of `engine` for every member (state leaves (M, ...), seeds (M,)) on data
    (x (n, ...), y (n, ...)); keep each member's parameters at the end of keep_epochs.

    A non-finite loss raises FloatingPointError naming the epoch; Ctrl-C returns what was done
    (run.interrupted). With run_dir, calling again with the same settings resumes."""
    n = len(data[0])
    steps = n // batch_size
    keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
    keep = frozenset(int(e) for e in keep_epochs)
    one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), engine.position(state))
    cap = iterations_per_call(one, len(seeds), {}, bool(keep))
    cap = min(block_length or cap, n_epochs)
    settings = {"batch": batch_size, "steps": steps, "length": cap, "keep_positions": bool(keep)}
    noise_scale = target.temperature * sum(math.prod(a.shape) for a in jax.tree.leaves(one)) / n
    run = EpochRun(state, {})
    rows: list[dict[str, np.ndarray]] = []
    fingerprint = dict(fingerprint or {}, seeds=list(seeds), n_epochs=n_epochs, batch=batch_size)
    if run_dir is not None:  # a resumed run must see the same data, not just the same size
        fingerprint["data_sha256"] = data_digest(*jax.device_get(data))
        rows = _resume(Path(run_dir), engine, run, fingerprint)
    next_length, n_calls = (cap if block_length else 1), 0
    bar = tqdm(total=n_epochs, initial=run.completed, desc=desc, disable=not progress, unit="epoch")
    try:
        while run.completed < n_epochs:
            start, length = run.completed, min(next_length, n_epochs - run.completed)
            started = time.perf_counter()
            new_state, out = _epochs_block(
                engine, target, keys, jnp.asarray(start), jnp.asarray(start + length),
                run.state, data, **settings,
            )  # fmt: skip
            stats, positions = jax.device_get(jax.tree.map(lambda a, k=length: a[:k], out))
            n_calls += 1
            if block_length is None and n_calls >= 2:  # the first call's time includes compiling
                next_length = next_block_length(time.perf_counter() - started, length, cap)
            first = (rows or [{k: v[0] for k, v in stats.items()}])[0]
            check_loss(
                stats["loss"], start, desc, first.get(FIRST_LOSS, first["loss"]), noise_scale,
                getattr(engine, "learning_rate", None),
            )  # fmt: skip
            for row in range(length):
                rows.append({k: v[row] for k, v in stats.items()})
                if start + row in keep:
                    run.draws += [
                        (start + row, m, jax.tree.map(lambda a, m=m, r=row: a[r, m], positions))
                        for m in range(len(seeds))
                    ]
            run.state, run.completed = new_state, start + length
            if run_dir is not None:
                _checkpoint(Path(run_dir), run, rows, fingerprint)
            bar.update(length)
            bar.set_postfix(loss=f"{float(np.mean(stats['loss'][length - 1])):.4g}")
    except KeyboardInterrupt:
        run.interrupted = True
        warn_interrupted(desc, run.completed, n_epochs, "epochs", run_dir)
    finally:
        bar.close()
    run.stats = {k: np.stack([r[k] for r in rows]) for k in (rows[0] if rows else {})}
    return run


@eqx.filter_jit
def _epochs_block(
    engine, target, keys, start, stop, state, data, *, batch, steps, length, keep_positions
):
    """Epochs start .. min(start + length, stop) - 1 of every member, scanned."""

    def epoch(member_key, state, e):
        key = jax.random.wrap_key_data(member_key)
        n = data[0].shape[0]
        if batch == n:
            order = jnp.arange(n).reshape(1, n)
        else:
            shuffle = jax.random.fold_in(jax.random.fold_in(key, SHUFFLE_STREAM), e)
            order = jax.random.permutation(shuffle, n)[: steps * batch].reshape(steps, batch)
        step_keys = jax.random.split(
            jax.random.fold_in(jax.random.fold_in(key, STEP_STREAM), e), steps
        )

        def one(state, inputs):
            k, idx, i = inputs
            batch_data = tuple(a[idx] for a in data)
            return engine.step(target, k, state, batch_data, e * steps + i)

        state, infos = jax.lax.scan(one, state, (step_keys, order, jnp.arange(steps)))
        state = engine.end_epoch(target, state, e)
        stats = {k: jnp.mean(v, axis=0) for k, v in infos._asdict().items()}
        return state, stats | {FIRST_LOSS: infos.loss[0]}

    def run(state, e):
        state, stats = jax.vmap(epoch, in_axes=(0, 0, None))(keys, state, e)
        return state, (stats, engine.position(state) if keep_positions else None)

    return scan_until(run, state, start, stop, length)


FIRST_LOSS = "loss_first_step"  # stats: the loss of each epoch's first step
# A loss this many times its own scale above where the run started has diverged. The loss is a
# mean over examples of -(log likelihood + log prior) / n: optimisers lower it from the start,
# and SG-MCMC at temperature T settles near its minimum plus about T d / (2n) (equipartition: T/2
# nats per parameter), which the scale includes. Minibatch noise and cyclical restarts
# move it by O(1) times its scale; the diverged runs this catches reach 1e13 and more.
DIVERGENCE_FACTOR = 1e3


def divergence_bound(start: np.ndarray, noise_scale: float = 0.0) -> np.ndarray:
    """The loss above which a run that started at loss `start` (per member) has diverged;
    noise_scale: T d / n, the loss SG-MCMC noise may add (d parameters, n examples)."""
    scale = np.maximum(np.maximum(np.abs(start), 1.0), noise_scale)
    return start + DIVERGENCE_FACTOR * scale


def check_loss(
    loss: np.ndarray,
    start: int,
    desc: str,
    initial: np.ndarray,
    noise_scale: float = 0.0,
    learning_rate=None,
) -> None:
    """Raise FloatingPointError at the first epoch of a block (loss (epochs, M), its first epoch
    `start`) whose loss is not finite or lies above `divergence_bound` of the run's first loss
    `initial` (M,), naming the epoch and the learning rate."""
    initial = np.asarray(initial)
    bad = np.argwhere(~(loss <= divergence_bound(initial, noise_scale)))  # also catches NaN
    if not len(bad):
        return
    epoch, member = bad[0]
    who = f" (member {member})" if loss.shape[1] > 1 else ""
    value = loss[epoch, member]
    at = f"at epoch {start + epoch + 1}{who}"
    what = (
        f"became {value} {at}"
        if not np.isfinite(value)
        else f"diverged {at}: {value:.3g}, from {initial[member]:.3g} at the start"
    )
    rate = "" if learning_rate is None else f" (now {float(np.asarray(learning_rate)):.3g})"
    raise FloatingPointError(f"{desc} loss {what}; lower the learning rate{rate}")


def _checkpoint(run_dir: Path, run: EpochRun, rows: list, fingerprint: dict) -> None:
    arrays = {f"stats/{k}": np.stack([r[k] for r in rows]) for k in rows[0]}
    for i, (epoch, member, params) in enumerate(run.draws):
        arrays[f"draw_at/{i}"] = np.asarray([epoch, member])
        arrays |= {f"draw/{i}/{j}": np.asarray(a) for j, a in enumerate(jax.tree.leaves(params))}
    save_run_state(run_dir, jax.device_get(run.state), arrays, run.completed, fingerprint)


def _resume(
    run_dir: Path, engine: EpochEngine, run: EpochRun, fingerprint: dict
) -> list[dict[str, np.ndarray]]:
    """Fill `run` from run_dir's checkpoint, if any -> the stats rows done."""
    loaded = load_run_state(run_dir, run.state, fingerprint)
    if loaded is None:
        return []
    host_state, arrays, run.completed = loaded
    run.state = jax.tree.map(jnp.asarray, host_state)
    treedef = jax.tree.structure(engine.position(run.state))
    for i in range(len(prefixed(arrays, "draw_at"))):
        epoch, member = (int(v) for v in arrays[f"draw_at/{i}"])
        params = [arrays[f"draw/{i}/{j}"] for j in range(treedef.num_leaves)]
        run.draws.append((epoch, member, jax.tree.unflatten(treedef, params)))
    stats = prefixed(arrays, "stats")
    return [{k: v[i] for k, v in stats.items()} for i in range(run.completed)]


class EpochProblem(NamedTuple):
    """A minibatch fit's target, starting parameters, data on the device and batch size."""

    target: Target
    params: PyTree  # the model's parameters
    data: Data  # (x (n, ...), y (n, ...)) device arrays (rotated when target.whitening is set)
    batch_size: int
    settings: dict  # the user's prior; whitened_first_layer: True when it runs whitened

    def params_of(self, positions: PyTree) -> PyTree:
        """The model's parameters at (n_members, ...) engine positions."""
        return jax.vmap(self.target.params_of)(positions)


def prepare_epochs(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    likelihood: str | Likelihood = "categorical",
    temperature: float = 1.0,
    batch_size: int | None = None,
    n_epochs: int = 1,
    whiten_first_layer: bool = False,
) -> EpochProblem:
    """Check the data and settings every minibatch engine shares. whiten_first_layer: optimise
    a dense EmpCov first layer in whitened coordinates with the inputs rotated once
    (`whitening.py`; the same objective, far better conditioned: its stiff directions are
    rescaled to the prior's scale); engines whose state is more than a position leave it off."""
    target, params, x, y = make_target(
        model, prior, x, y, likelihood=likelihood, temperature=temperature
    )
    batch = check_batch(batch_size, len(x), n_epochs)
    settings = {"prior": prior.describe()}
    found = find_whitening(model, prior, params) if whiten_first_layer else None
    if found is not None:
        whitening, whitened_prior = found
        target = dataclasses.replace(target, prior=whitened_prior, whitening=whitening)
        x = whitening.rotate(x)
        settings["whitened_first_layer"] = True
    return EpochProblem(target, params, (jnp.asarray(x), jnp.asarray(y)), batch, settings)


def fit_epochs(
    method: str,
    engine: EpochEngine,
    problem: EpochProblem,
    starts: Sequence[PyTree],
    settings: dict,
    *,
    seeds: Sequence[int],
    n_epochs: int,
    keep_epochs: Sequence[int] = (),
    run_dir: str | Path | None = None,
    progress: bool = True,
    epochs_per_call: int | None = None,
) -> tuple[EpochRun, dict]:
    """Run `engine` from each start (one member per start and seed) -> (run, attrs): the
    settings plus what every minibatch fit records."""
    target = problem.target
    if target.whitening is not None:
        starts = [target.whitening.to_whitened(s) for s in starts]
    stacked = jax.tree.map(lambda *a: jnp.stack([jnp.asarray(x) for x in a]), *starts)
    state = _init_members(engine, target, stacked)
    attrs = settings | {
        "method": method,
        "n_epochs": n_epochs,
        "batch_size": problem.batch_size,
        "temperature": target.temperature,
        "n_train": target.n,
        "likelihood": target.likelihood.describe(),
        "input_shape": list(problem.data[0].shape[1:]),
        **problem.settings,
    }
    shapes = [list(a.shape) for a in jax.tree.leaves(problem.params)]
    started = time.perf_counter()
    run = run_epochs(
        engine, target, state, problem.data,
        seeds=seeds, n_epochs=n_epochs, batch_size=problem.batch_size, keep_epochs=keep_epochs,
        run_dir=run_dir, fingerprint=attrs | {"shapes": shapes}, progress=progress,
        desc=method.upper(), block_length=epochs_per_call,
    )  # fmt: skip
    attrs |= {
        "n_epochs_done": run.completed,
        "interrupted": run.interrupted,
        "seconds": time.perf_counter() - started,
    }
    return run, attrs


@eqx.filter_jit
def _init_members(engine: EpochEngine, target: Target, positions: PyTree) -> Any:
    return jax.vmap(engine.init, in_axes=(None, 0))(target, positions)
