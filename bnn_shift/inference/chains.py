"""The HMC driver loop: chains in lockstep, burn-in, model averaging, checkpoints, progress.

One compiled call runs a block of iterations (every chain's trajectory, accept test and eval-set
predictions, scanned); the host then accumulates per-chain model averages and stats row by row,
streams kept draws to disk when a run directory is given, and checkpoints after every block, so
a killed run resumes to exactly the chain an uninterrupted run would have produced. Block
lengths adapt to about BLOCK_SECONDS of work: long for small models (the per-call overhead
dominates them), one iteration where iterations are slow.

Every post-burn-in iteration contributes its state, accepted or not: a Metropolis chain that
rejects stays where it is, and that state counts again. keep="accepted" averages accepted states
only, as the covariate-shift paper's code does; that weights each state by its probability of
being left, which widens the draws (sd ~10% too large at acceptance 0.4).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from bnn_shift.inference.checkpoint import (
    arrays_to_tree,
    load_arrays,
    save_arrays,
    tree_to_arrays,
)
from bnn_shift.inference.kernel import HMCInfo, HMCKernel, HMCState
from bnn_shift.inference.sharding import is_writer, like_placed, to_host
from bnn_shift.models.params import PyTree

STATS = ("accepted", "acceptance_rate", "diverging", "energy", "log_density", "mh", "step_size")
KEEP_RULES = ("all", "accepted")
STATE_FILE = "checkpoint.npz"
DRAWS_DIR = "draws"
BLOCK_BYTES = 4 * 2**20  # device output of one compiled block: bounds its number of iterations
MAX_BLOCK = 100  # iterations per compiled call at most (and per checkpoint)
BLOCK_SECONDS = 2.0  # wall time an automatic block aims at: progress, Ctrl-C and checkpoints

PredictFn = Callable[[PyTree, jax.Array], jax.Array]  # (params, x (m, ...)) -> probs (m, k)


@dataclass
class ChainRun:
    """What a run accumulated; stats and trace arrays are (n_iterations, n_chains)."""

    stats: dict[str, np.ndarray]
    trace: dict[str, np.ndarray]  # function-space quantities per iteration and chain
    sums: dict[str, np.ndarray]  # eval name -> (n_chains, m, k) sums over kept states
    counts: np.ndarray  # (n_chains,) post-burn-in states averaged per chain
    draws: list[tuple[int, PyTree]] = field(default_factory=list)  # (chain, params) kept draws
    streamed: tuple[PyTree, np.ndarray] | None = None  # run_dir: (memory-mapped draws, chains)
    completed: int = 0  # iterations done
    interrupted: bool = False  # stopped by Ctrl-C before n_iterations


class BlockOutput(NamedTuple):
    """Per-iteration outputs of one block, leaves (length, n_chains, ...)."""

    info: HMCInfo
    log_density: jax.Array
    log_likelihood: jax.Array  # summed over the training set
    probs: dict[str, jax.Array]  # eval name -> (length, n_chains, m, k)
    traced: dict[str, jax.Array]  # traced parameter name -> its values
    positions: PyTree | None  # None unless draws are kept


def iteration_keys(seed: int | jax.Array, iteration, n_chains: int) -> jax.Array:
    """Keys for one iteration (seed: int or a key): independent of how the run was split."""
    base = jax.random.key(seed) if isinstance(seed, int) else seed
    return jax.random.split(jax.random.fold_in(base, iteration), n_chains)


def iterations_per_call(
    params: PyTree, n_chains: int, eval_sizes: Mapping[str, int], keep_draws: bool
) -> int:
    """Iterations one compiled block runs: as many as fit BLOCK_BYTES of per-iteration output
    (kept positions of `params`, one chain's arrays or shape structs, and eval-set predictions,
    eval_sizes: name -> m * k), at most MAX_BLOCK."""
    n_params = sum(math.prod(a.shape) for a in jax.tree.leaves(params))
    floats = sum(eval_sizes.values()) + keep_draws * n_params
    return int(min(MAX_BLOCK, max(1, BLOCK_BYTES // (4 * n_chains * max(floats, 1)))))


def next_block_length(seconds: float, n_run: int, cap: int) -> int:
    """Iterations for the next automatic block, from the last block's time (n_run iterations in
    `seconds`): as many as fit BLOCK_SECONDS, between 1 and cap."""
    per_iteration = max(seconds / n_run, 1e-9)
    return int(min(cap, max(1, math.floor(BLOCK_SECONDS / per_iteration + 1e-9))))


def build_block(
    kernel: HMCKernel,
    predict: PredictFn,
    n_chains: int,
    length: int,
    *,
    keep_positions: bool = True,
    traced_leaves: Mapping[str, int] | None = None,
):
    """A jitted (key, start, stop, state, data, eval_x, n_burnin) -> (state, BlockOutput) running
    iterations start .. min(start + length, stop) - 1 of every chain (rows past `stop` are
    zeros, so a shorter last block reuses the same program); iteration i uses
    iteration_keys(key, i) and the MH test from i >= n_burnin on."""
    traced_leaves = dict(traced_leaves or {})

    def chains_step(keys, state, data, mh, eval_x):
        state, info = jax.vmap(kernel.step, in_axes=(0, 0, None, None))(keys, state, data, mh)
        probs = {
            n: jax.vmap(predict, in_axes=(0, None))(state.position, x) for n, x in eval_x.items()
        }
        return state, info, probs

    # vmap over a chain axis of size 1 turns convolutions into grouped ones (several times
    # slower on CPUs) and adds transposes, so a single chain runs unbatched.
    def single_step(keys, state, data, mh, eval_x):
        squeeze = partial(jax.tree.map, lambda a: a[0])
        expand = partial(jax.tree.map, lambda a: a[None])
        state, info = kernel.step(keys[0], squeeze(state), data, mh)
        probs = {n: predict(state.position, x)[None] for n, x in eval_x.items()}
        return expand(state), expand(info), probs

    step = single_step if n_chains == 1 else chains_step

    def block(key, start, stop, state: HMCState, data, eval_x, n_burnin):
        def run(state, i):
            state, info, probs = step(
                iteration_keys(key, i, n_chains), state, data, i >= n_burnin, eval_x
            )
            leaves = jax.tree.leaves(state.position)
            out = BlockOutput(
                info=info,
                log_density=state.logdensity,
                log_likelihood=jnp.sum(state.loglik, axis=-1),
                probs=probs,
                traced={name: leaves[j] for name, j in traced_leaves.items()},
                positions=state.position if keep_positions else None,
            )
            return state, out

        shapes = jax.eval_shape(run, state, start)[1]

        def skip(state, i):
            return state, jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)

        def one(state, i):
            return jax.lax.cond(i < stop, run, skip, state, i)

        return jax.lax.scan(one, state, start + jnp.arange(length))

    return jax.jit(block)


def function_space_trace(
    log_likelihood: np.ndarray,
    probs: Mapping[str, np.ndarray],
    eval_y: Mapping[str, np.ndarray | None],
) -> dict[str, np.ndarray]:
    """Per-chain quantities to diagnose mixing: train log-likelihood (n_chains,); for labelled
    eval sets (probs (n_chains, m, k)), their mean log predictive and accuracy."""
    out = {"log_likelihood": log_likelihood}
    for name, p in probs.items():
        y = eval_y.get(name)
        if y is not None:
            true = np.take_along_axis(p, y[None, :, None], axis=-1)[..., 0]  # (C, m)
            out[f"{name}_log_predictive"] = np.mean(np.log(np.maximum(true, 1e-12)), axis=-1)
            out[f"{name}_accuracy"] = np.mean(np.argmax(p, axis=-1) == y[None], axis=-1)
    return out


def _fingerprint_matches(meta: dict[str, Any], fingerprint: dict[str, Any], path: Path) -> None:
    if meta.get("fingerprint") != fingerprint:
        raise ValueError(
            f"{path} holds a checkpoint of a different run ({meta.get('fingerprint')}); "
            f"this run is {fingerprint}. Use another run directory or delete it."
        )


def run_chains(
    kernel: HMCKernel,
    state: HMCState,
    data: tuple,
    *,
    predict: PredictFn,
    eval_sets: Mapping[str, tuple[jax.Array, np.ndarray | None]],
    n_iterations: int,
    n_burnin: int,
    seed: int,
    thin: int = 1,
    keep: str = "all",
    keep_draws: bool = True,
    run_dir: Path | None = None,
    fingerprint: dict[str, Any] | None = None,
    traced_leaves: Mapping[str, int] | None = None,
    progress: bool = True,
    block_length: int | None = None,
) -> ChainRun:
    """Run chains (state leaves have a leading chain axis) for n_iterations, resuming from
    run_dir's checkpoint when there is one. Interrupting returns what was done so far.

    keep: "all" post-burn-in states (the Markov chain) or only "accepted" ones (biased; the
    paper's code). block_length: iterations per compiled call and checkpoint. By default
    blocks adapt: one iteration for the first two calls (the first compiles), then as many as
    take about BLOCK_SECONDS, capped by `iterations_per_call`'s memory rule; one program serves
    every length. The chain does not depend on the block lengths.
    """
    if keep not in KEEP_RULES:
        raise ValueError(f"keep must be one of {KEEP_RULES}, got {keep!r}")
    n_chains = int(state.logdensity.shape[0])
    eval_x = {name: x for name, (x, _) in eval_sets.items()}
    eval_y = {name: y for name, (_, y) in eval_sets.items()}
    one_chain = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), state.position)
    adaptive = block_length is None
    if adaptive:
        sizes = {n: _prediction_size(predict, one_chain, x) for n, x in eval_x.items()}
        block_length = iterations_per_call(one_chain, n_chains, sizes, keep_draws)
    block_length = min(block_length, n_iterations)
    next_length, n_calls = (1 if adaptive else block_length), 0
    block = build_block(
        kernel,
        predict,
        n_chains,
        block_length,
        keep_positions=keep_draws,
        traced_leaves=traced_leaves,
    )
    record = ChainRun(stats={}, trace={}, sums={}, counts=np.zeros(n_chains, np.int64))
    stats_rows: list[dict[str, np.ndarray]] = []
    trace_rows: list[dict[str, np.ndarray]] = []
    fingerprint = dict(fingerprint or {}, n_chains=n_chains, seed=seed, n_burnin=n_burnin)
    fingerprint |= {"keep": keep} if keep != "all" else {}

    if run_dir is not None and (Path(run_dir) / STATE_FILE).exists():
        state, record, stats_rows, trace_rows = _resume(
            Path(run_dir), state, record, fingerprint, keep_draws
        )
    bar = tqdm(
        total=n_iterations, initial=record.completed, desc="HMC", disable=not progress, unit="it"
    )
    key = jax.random.key(seed)
    try:
        while record.completed < n_iterations:
            start = record.completed
            length = min(next_length, n_iterations - start)
            started = time.perf_counter()
            state, out = block(
                key, jnp.asarray(start), jnp.asarray(start + length), state, data, eval_x, n_burnin
            )
            out = to_host(jax.tree.map(lambda a, n=length: a[:n], out))  # only the rows run
            n_calls += 1
            if adaptive and n_calls >= 2:  # the first call's time includes compiling
                next_length = next_block_length(time.perf_counter() - started, length, block_length)
            for row in range(length):
                _record_iteration(
                    record, stats_rows, trace_rows, out, row, start + row, eval_y,
                    n_burnin=n_burnin, keep=keep, thin=thin, keep_draws=keep_draws,
                    run_dir=run_dir,
                )  # fmt: skip
            record.completed = start + length
            if run_dir is not None:
                _checkpoint(Path(run_dir), state, record, stats_rows, trace_rows, fingerprint)
            _show(bar, stats_rows, n_burnin, record.counts, length)
    except KeyboardInterrupt:
        record.interrupted = True
        warnings.warn(
            f"HMC interrupted after {record.completed} of {n_iterations} iterations; returning "
            "what was drawn" + (f" (resume from {run_dir})" if run_dir else ""),
            stacklevel=3,
        )
    finally:
        bar.close()
    record.stats = _stack(stats_rows, STATS, n_chains)
    record.trace = _stack(trace_rows, trace_rows[0].keys() if trace_rows else (), n_chains)
    if run_dir is not None and keep_draws:
        record.streamed = _stack_streamed_draws(Path(run_dir), state.position, record.completed)
    return record


def _prediction_size(predict: PredictFn, params_like: PyTree, x: jax.Array) -> int:
    """m * k: the number of floats one chain's predictions on x take."""
    return math.prod(jax.eval_shape(predict, params_like, x).shape)


def _record_iteration(
    record: ChainRun,
    stats_rows: list,
    trace_rows: list,
    out: BlockOutput,
    row: int,
    i: int,
    eval_y: Mapping[str, np.ndarray | None],
    *,
    n_burnin: int,
    keep: str,
    thin: int,
    keep_draws: bool,
    run_dir: Path | None,
) -> None:
    """Fold iteration i (row `row` of a block's host output) into the record."""
    info = jax.tree.map(lambda a: a[row], out.info)
    stats_rows.append({k: getattr(info, k) for k in STATS if k != "log_density"})
    stats_rows[-1]["log_density"] = out.log_density[row]
    probs = {k: v[row].astype(np.float64) for k, v in out.probs.items()}
    trace = function_space_trace(out.log_likelihood[row], probs, eval_y)
    trace_rows.append(trace | {k: v[row] for k, v in out.traced.items()})
    n_chains = len(record.counts)
    sampled = np.full(n_chains, i >= n_burnin)
    kept = sampled & info.accepted if keep == "accepted" else sampled
    for name, p in probs.items():
        record.sums.setdefault(name, np.zeros_like(p))
        record.sums[name] += kept.reshape(-1, *(1,) * (p.ndim - 1)) * p  # (C, m, ...)
    record.counts += kept
    if keep_draws and (i - n_burnin) % thin == 0:
        _keep(record, jax.tree.map(lambda a: a[row], out.positions), kept, i, run_dir)


def _keep(record: ChainRun, position: PyTree, kept: np.ndarray, i: int, run_dir) -> None:
    """Store the kept chains' states (position: host leaves (n_chains, ...))."""
    for chain in np.flatnonzero(kept):
        params = jax.tree.map(lambda a, c=chain: a[c], position)
        if run_dir is None:
            record.draws.append((int(chain), params))
        elif is_writer():
            path = Path(run_dir) / DRAWS_DIR / f"iter{i:07d}_chain{chain:04d}.npz"
            save_arrays(
                path, tree_to_arrays(params, "params"), {"iteration": i, "chain": int(chain)}
            )


def _stack_streamed_draws(
    run_dir: Path, position: PyTree, completed: int
) -> tuple[PyTree, np.ndarray]:
    """The kept draws as memory-mapped `draws-<leaf>.npy` stacks (n_draws, ...) and their chains.

    Files are filled one draw at a time, so host memory stays at one draw however many are kept.
    Process 0 writes them; the other processes of a multi-host run wait, then map them.
    """
    leaves, treedef = jax.tree.flatten(position)
    if not is_writer():
        multihost_utils.sync_global_devices("bnn_shift draws written")
        stacks = [np.load(run_dir / f"draws-{i}.npy", mmap_mode="r") for i in range(len(leaves))]
        return jax.tree.unflatten(treedef, stacks), np.load(run_dir / "draws-chain.npy")
    paths = [
        path
        for path in sorted((run_dir / DRAWS_DIR).glob("iter*_chain*.npz"))
        if int(path.name[4:11]) < completed
    ]
    stacks = [
        np.lib.format.open_memmap(
            run_dir / f"draws-{i}.npy", "w+", leaf.dtype, (len(paths), *leaf.shape[1:])
        )
        for i, leaf in enumerate(leaves)
    ]
    like = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(a.shape[1:], a.dtype) for a in leaves])
    chains = np.zeros(len(paths), np.int32)
    for row, path in enumerate(paths):
        arrays, meta = load_arrays(path)
        chains[row] = meta["chain"]
        for stack, value in zip(stacks, jax.tree.leaves(arrays_to_tree(arrays, "params", like))):
            stack[row] = value
    for stack in stacks:
        stack.flush()
    np.save(run_dir / "draws-chain.npy", chains)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("bnn_shift draws written")
    return jax.tree.unflatten(treedef, stacks), chains


def _checkpoint(run_dir, state, record, stats_rows, trace_rows, fingerprint) -> None:
    host_state = to_host(state)  # every process joins the gather; process 0 writes
    if not is_writer():
        return
    arrays = tree_to_arrays(host_state, "state")
    arrays |= {f"sums/{k}": v for k, v in record.sums.items()}
    arrays["counts"] = record.counts
    n_chains = len(record.counts)
    arrays |= {f"stats/{k}": v for k, v in _stack(stats_rows, STATS, n_chains).items()}
    arrays |= {
        f"trace/{k}": v for k, v in _stack(trace_rows, trace_rows[0].keys(), n_chains).items()
    }
    save_arrays(
        run_dir / STATE_FILE, arrays, {"completed": record.completed, "fingerprint": fingerprint}
    )


def _resume(run_dir, state, record, fingerprint, keep_draws):
    arrays, meta = load_arrays(run_dir / STATE_FILE)
    _fingerprint_matches(meta, fingerprint, run_dir / STATE_FILE)
    state = like_placed(arrays_to_tree(arrays, "state", state), state)
    record.completed = int(meta["completed"])
    record.counts = arrays["counts"]
    record.sums = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("sums/")}
    stats = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("stats/")}
    trace = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("trace/")}
    stats_rows = [{k: v[i] for k, v in stats.items()} for i in range(record.completed)]
    trace_rows = [{k: v[i] for k, v in trace.items()} for i in range(record.completed)]
    if keep_draws and is_writer():  # draws written after the last checkpoint are redone
        for path in (run_dir / DRAWS_DIR).glob("iter*_chain*.npz"):
            if int(path.name[4:11]) >= record.completed:
                path.unlink()
    return state, record, stats_rows, trace_rows


def _stack(rows: list[dict[str, np.ndarray]], keys, n_chains: int) -> dict[str, np.ndarray]:
    if not rows:
        return {k: np.zeros((0, n_chains)) for k in keys}
    return {k: np.stack([row[k] for row in rows]) for k in keys}


def _show(bar, stats_rows, n_burnin: int, counts: np.ndarray, n_new: int) -> None:
    sampled = [row["acceptance_rate"] for row in stats_rows[n_burnin:]]
    bar.set_postfix(
        accept=f"{np.mean(sampled):.2f}" if sampled else "burn-in",
        kept=int(counts.sum()),
        diverging=int(sum(row["diverging"].sum() for row in stats_rows)),
    )
    bar.update(n_new)
