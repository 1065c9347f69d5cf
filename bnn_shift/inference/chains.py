"""The full-batch MCMC driver: chains in lockstep, burn-in, model averaging, checkpoints, progress.

It drives any engine with the full-batch protocol (`FullBatchSampler`: HMC, NUTS, MALA, ...):
    init(target, position, data) -> state       (state.position, .logdensity, .loglik (n,))
    step(target, key, state, data, warmup) -> (state, info)   (info: a NamedTuple of scalars)
`warmup` is True for the first n_burnin iterations (HMC: no MH test; NUTS: adaptation).

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
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from bnn_shift.inference.checkpoint import (
    data_digest,
    load_run_state,
    prefixed,
    save_arrays,
    save_run_state,
    tree_to_arrays,
)
from bnn_shift.inference.draw_files import (
    DRAWS_DIR,
    draw_file_name,
    kept_draw_names,
    remove_draws_from,
    stack_streamed_draws,
)
from bnn_shift.inference.likelihood import check_labels
from bnn_shift.inference.sharding import is_writer, like_placed, to_host
from bnn_shift.inference.target import Data, Target
from bnn_shift.typing import PyTree

KEEP_RULES = ("all", "accepted")
BLOCK_BYTES = 4 * 2**20  # device output of one compiled block: bounds its number of iterations
MAX_BLOCK = 100  # iterations per compiled call at most (and per checkpoint)
BLOCK_SECONDS = 2.0  # wall time an automatic block aims at: progress, Ctrl-C and checkpoints


class FullBatchSampler(Protocol):
    """An MCMC engine on the whole training set (see the module docstring)."""

    def init(self, target: Target, position: PyTree, data: Data) -> Any: ...

    def step(
        self, target: Target, key: jax.Array, state: Any, data: Data, warmup: jax.Array
    ) -> tuple[Any, NamedTuple]: ...


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

    info: NamedTuple  # the engine's per-iteration info
    log_density: jax.Array
    log_likelihood: jax.Array  # summed over the training set
    probs: dict[str, jax.Array]  # eval name -> (length, n_chains, m, k)
    traced: dict[str, jax.Array]  # traced parameter name -> its values
    positions: PyTree | None  # None unless draws are kept


def iteration_keys(seed: int | jax.Array, iteration, n_chains: int) -> jax.Array:
    """Keys for one iteration (seed: int or a key): independent of how the run was split."""
    base = jax.random.key(seed) if isinstance(seed, int) else seed
    return jax.random.split(jax.random.fold_in(base, iteration), n_chains)


def check_count(name: str, value, minimum: int = 1) -> int:
    """An integer setting (not a bool or a float) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} is {value!r}; give an integer >= {minimum}")
    return int(value)


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
    engine: FullBatchSampler,
    target: Target,
    n_chains: int,
    length: int,
    *,
    keep_positions: bool = True,
    traced_leaves: Mapping[str, int] | None = None,
):
    """A (key, start, stop, state, data, eval_x, n_burnin) -> (state, BlockOutput) running
    iterations start .. min(start + length, stop) - 1 of every chain (rows past `stop` are
    zeros, so a shorter last block reuses the same program); iteration i uses
    iteration_keys(key, i) and is a warmup iteration while i < n_burnin.

    The program is compiled once per engine type, shapes and static settings: the engine and
    the target are its arguments, so another fit of the same kind reuses it."""
    settings = {
        "n_chains": n_chains,
        "length": length,
        "keep_positions": keep_positions,
        "traced": tuple(sorted(dict(traced_leaves or {}).items())),
    }

    def block(key, start, stop, state, data, eval_x, n_burnin):
        return _block(engine, target, key, *map(jnp.asarray, (start, stop)), state, data,
                      eval_x, jnp.asarray(n_burnin), **settings)  # fmt: skip

    return block


def _chains_step(engine, target, keys, state, data, warmup, eval_x):
    step = jax.vmap(engine.step, in_axes=(None, 0, 0, None, None))
    state, info = step(target, keys, state, data, warmup)
    probs = {
        n: jax.vmap(target.predict, in_axes=(0, None))(state.position, x) for n, x in eval_x.items()
    }
    return state, info, probs


# vmap over a chain axis of size 1 turns convolutions into grouped ones (several times slower
# on CPUs) and adds transposes, so a single chain runs unbatched.
def _single_step(engine, target, keys, state, data, warmup, eval_x):
    squeeze = partial(jax.tree.map, lambda a: a[0])
    expand = partial(jax.tree.map, lambda a: a[None])
    state, info = engine.step(target, keys[0], squeeze(state), data, warmup)
    probs = {n: target.predict(state.position, x)[None] for n, x in eval_x.items()}
    return expand(state), expand(info), probs


@eqx.filter_jit
def _block(
    engine, target, key, start, stop, state, data, eval_x, n_burnin, *,
    n_chains, length, keep_positions, traced,
):  # fmt: skip
    step = _single_step if n_chains == 1 else _chains_step
    traced_leaves = dict(traced)

    def run(state, i):
        keys = iteration_keys(key, i, n_chains)
        state, info, probs = step(engine, target, keys, state, data, i < n_burnin, eval_x)
        params = jax.vmap(target.params_of)(state.position)  # (n_chains, ...) model parameters
        leaves = jax.tree.leaves(params)
        out = BlockOutput(
            info=info,
            log_density=state.logdensity,
            log_likelihood=jnp.sum(state.loglik, axis=-1),
            probs=probs,
            traced={name: leaves[j] for name, j in traced_leaves.items()},
            positions=params if keep_positions else None,
        )
        return state, out

    return scan_until(run, state, start, stop, length)


def scan_until(run, state, start: jax.Array, stop: jax.Array, length: int):
    """lax.scan of `run(state, i) -> (state, out)` over i = start .. start + length - 1, where
    rows from `stop` on leave the state alone and output zeros: one program of fixed length
    serves every shorter block."""
    shapes = jax.eval_shape(run, state, start)[1]

    def skip(state, i):
        return state, jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)

    def one(state, i):
        return jax.lax.cond(i < stop, run, skip, state, i)

    return jax.lax.scan(one, state, start + jnp.arange(length))


def warn_interrupted(name: str, done: int, total: int, unit: str, run_dir) -> None:
    """The warning a driver gives when Ctrl-C stops it: what was done, where to resume."""
    warnings.warn(
        f"{name} interrupted after {done} of {total} {unit}; returning what was done"
        + (f" (resume from {run_dir})" if run_dir else ""),
        stacklevel=4,
    )


POINTWISE = "_pointwise_log_predictive"  # trace name suffix of per-point log predictives


def function_space_trace(
    log_likelihood: np.ndarray,
    probs: Mapping[str, np.ndarray],
    eval_y: Mapping[str, np.ndarray | None],
    pointwise: Collection[str] = (),
) -> dict[str, np.ndarray]:
    """Per-chain quantities to diagnose mixing: train log-likelihood (n_chains,); for labelled
    eval sets (probs (n_chains, m, k)), their mean log predictive and accuracy, and for the sets
    named in `pointwise` each point's log predictive (n_chains, m) (float32)."""
    out = {"log_likelihood": log_likelihood}
    for name, p in probs.items():
        y = eval_y.get(name)
        if y is not None:
            true = np.take_along_axis(p, y[None, :, None], axis=-1)[..., 0]  # (C, m)
            log_true = np.log(np.maximum(true, 1e-12))
            out[f"{name}_log_predictive"] = np.mean(log_true, axis=-1)
            out[f"{name}_accuracy"] = np.mean(np.argmax(p, axis=-1) == y[None], axis=-1)
            if name in pointwise:
                out[f"{name}{POINTWISE}"] = log_true.astype(np.float32)
    return out


def check_eval_labels(name: str, y, target: Target, params_like: PyTree, x) -> np.ndarray:
    """An eval set's labels (m,) checked as the training labels are: integer class ids of the
    model's outputs; -> int32."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"eval set {name!r} labels must be shaped (m,), got {y.shape}")
    n_classes = eqx.filter_eval_shape(target.predict, params_like, x).shape[-1]
    return check_labels(y, n_classes, f"eval set {name!r} labels")


def check_pointwise(pointwise: Collection[str], eval_y: Mapping[str, np.ndarray | None]) -> None:
    """Per-point traces need labelled eval sets of those names."""
    bad = [n for n in pointwise if eval_y.get(n) is None]
    if bad:
        labelled = [n for n, y in eval_y.items() if y is not None]
        raise ValueError(
            f"trace_pointwise names {bad}, which are not labelled eval sets; labelled eval sets: "
            f"{labelled or 'none (pass eval_sets={name: (x, y)})'}"
        )


def run_chains(
    engine: FullBatchSampler,
    target: Target,
    state: Any,
    data: Data,
    *,
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
    pointwise: Collection[str] = (),
    progress: bool = True,
    block_length: int | None = None,
) -> ChainRun:
    """Run chains of `engine` on `target` (state leaves have a leading chain axis) for
    n_iterations, resuming from run_dir's checkpoint when there is one. Interrupting returns
    what was done so far.

    keep: "all" post-burn-in states (the Markov chain) or only "accepted" ones (biased; the
    paper's code; engines whose info has an `accepted` field). block_length: iterations per
    compiled call and checkpoint. By default blocks adapt: one iteration for the first two
    calls (the first compiles), then as many as
    take about BLOCK_SECONDS, capped by `iterations_per_call`'s memory rule; one program serves
    every length. The chain does not depend on the block lengths. pointwise: labelled eval sets
    whose per-point log predictive is traced (n_iterations, n_chains, m).
    """
    if keep not in KEEP_RULES:
        raise ValueError(f"keep must be one of {KEEP_RULES}, got {keep!r}")
    n_chains = int(state.logdensity.shape[0])
    stat_names = (*_info_fields(engine, target, state, data), "log_density")
    if keep == "accepted" and "accepted" not in stat_names:
        raise ValueError(f'keep="accepted" needs an engine with an accept test, not {engine}')
    eval_x = {name: x for name, (x, _) in eval_sets.items()}
    one_chain = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), state.position)
    eval_y = {
        name: None if y is None else check_eval_labels(name, y, target, one_chain, eval_x[name])
        for name, (_, y) in eval_sets.items()
    }
    check_pointwise(pointwise, eval_y)
    adaptive = block_length is None
    if adaptive:
        sizes = {n: _prediction_size(target, one_chain, x) for n, x in eval_x.items()}
        block_length = iterations_per_call(one_chain, n_chains, sizes, keep_draws)
    block_length = min(block_length, n_iterations)
    next_length, n_calls = (1 if adaptive else block_length), 0
    block = build_block(
        engine,
        target,
        n_chains,
        block_length,
        keep_positions=keep_draws,
        traced_leaves=traced_leaves,
    )
    record = ChainRun(stats={}, trace={}, sums={}, counts=np.zeros(n_chains, np.int64))
    stats_rows: list[dict[str, np.ndarray]] = []
    trace_rows: list[dict[str, np.ndarray]] = []
    fingerprint = dict(fingerprint or {}, n_chains=n_chains, seed=seed, n_burnin=n_burnin)
    if run_dir is not None:  # a resumed run must see the same data, not just the same size
        fingerprint["data_sha256"] = data_digest(*to_host(data))
    fingerprint |= {"keep": keep} if keep != "all" else {}
    fingerprint |= {"pointwise": sorted(pointwise)} if pointwise else {}

    if run_dir is not None:
        state, stats_rows, trace_rows = _resume(
            Path(run_dir), state, record, fingerprint, keep_draws, n_iterations
        )
    name = type(engine).__name__
    bar = tqdm(
        total=n_iterations, initial=record.completed, desc=name, disable=not progress, unit="it"
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
                    run_dir=run_dir, pointwise=pointwise,
                )  # fmt: skip
            record.completed = start + length
            if run_dir is not None:
                _checkpoint(Path(run_dir), state, record, stats_rows, trace_rows, fingerprint)
            _show(bar, stats_rows, n_burnin, record.counts, length)
    except KeyboardInterrupt:
        record.interrupted = True
        warn_interrupted(name, record.completed, n_iterations, "iterations", run_dir)
    finally:
        bar.close()
    record.stats = _stack(stats_rows, stat_names, n_chains)
    record.trace = _stack(trace_rows, trace_rows[0].keys() if trace_rows else (), n_chains)
    if run_dir is not None and keep_draws:
        done = {k: v[: record.completed] for k, v in record.stats.items()}  # Ctrl-C mid-block
        kept = kept_draw_names(done, n_burnin, thin, keep)
        record.streamed = stack_streamed_draws(Path(run_dir), state.position, kept)
    return record


def no_draws_reason(run: ChainRun, n_burnin: int, keep: str) -> str | None:
    """Why a finished run averaged no state (None when it averaged some)."""
    if run.counts.sum() > 0:
        return None
    if run.completed <= n_burnin:
        done = f"{run.completed} iterations, all burn-in (n_burnin={n_burnin}, never kept)"
        if run.interrupted:
            return f"the run was interrupted after {done}; resume it (the same run_dir)"
        return f"the run did {done}; run more iterations than n_burnin"
    sampled = {k: np.asarray(v)[n_burnin:] for k, v in run.stats.items()}
    n_proposals = sampled["log_density"].size
    n_diverging = int(np.sum(sampled["diverging"])) if "diverging" in sampled else 0
    return (
        f'keep="{keep}" and no proposal after burn-in was accepted ({n_diverging} of '
        f"{n_proposals} diverged); lower the step size (or keep='all')"
    )


def _prediction_size(target: Target, params_like: PyTree, x: jax.Array) -> int:
    """m * k: the number of floats one chain's predictions on x take."""
    return math.prod(eqx.filter_eval_shape(target.predict, params_like, x).shape)


def _info_fields(engine, target: Target, state, data: Data) -> tuple[str, ...]:
    """The names of the engine's per-iteration info fields (traced, not run)."""
    one = jax.tree.map(lambda a: a[0], state)
    info = eqx.filter_eval_shape(engine.step, target, jax.random.key(0), one, data, True)[1]
    return info._fields


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
    pointwise: Collection[str],
) -> None:
    """Fold iteration i (row `row` of a block's host output) into the record."""
    info = jax.tree.map(lambda a: a[row], out.info)
    stats_rows.append(info._asdict() | {"log_density": out.log_density[row]})
    probs = {k: v[row].astype(np.float64) for k, v in out.probs.items()}
    trace = function_space_trace(out.log_likelihood[row], probs, eval_y, pointwise)
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
            path = Path(run_dir) / DRAWS_DIR / draw_file_name(i, int(chain))
            save_arrays(
                path, tree_to_arrays(params, "params"), {"iteration": i, "chain": int(chain)}
            )


def _checkpoint(run_dir, state, record, stats_rows, trace_rows, fingerprint) -> None:
    host_state = to_host(state)  # every process joins the gather; process 0 writes
    if not is_writer():
        return
    n_chains = len(record.counts)
    arrays = {f"sums/{k}": v for k, v in record.sums.items()} | {"counts": record.counts}
    arrays |= {f"stats/{k}": v for k, v in _stack(stats_rows, stats_rows[0], n_chains).items()}
    arrays |= {f"trace/{k}": v for k, v in _stack(trace_rows, trace_rows[0], n_chains).items()}
    save_run_state(run_dir, host_state, arrays, record.completed, fingerprint)


def _resume(run_dir: Path, state, record: ChainRun, fingerprint, keep_draws: bool, n_iterations):
    """Fill `record` from run_dir's checkpoint, if any -> (state, stats rows, trace rows).
    Draw files past the checkpoint (all of them when there is none: an earlier run's) are
    removed, since this run draws them again."""
    loaded = load_run_state(run_dir, state, fingerprint)
    if loaded is None:
        remove_draws_from(run_dir, 0, keep_draws)
        return state, [], []
    host_state, arrays, record.completed = loaded
    if record.completed > n_iterations:
        raise ValueError(
            f"{run_dir} holds a run of {record.completed} iterations, more than "
            f"n_iterations={n_iterations}; pass n_iterations >= {record.completed} to use it "
            "(more extends it), or another run_dir"
        )
    state = like_placed(host_state, state)
    record.counts = arrays["counts"]
    record.sums = prefixed(arrays, "sums")
    stats, trace = prefixed(arrays, "stats"), prefixed(arrays, "trace")
    stats_rows = [{k: v[i] for k, v in stats.items()} for i in range(record.completed)]
    trace_rows = [{k: v[i] for k, v in trace.items()} for i in range(record.completed)]
    remove_draws_from(run_dir, record.completed, keep_draws)
    return state, stats_rows, trace_rows


def _stack(rows: list[dict[str, np.ndarray]], keys, n_chains: int) -> dict[str, np.ndarray]:
    if not rows:
        return {k: np.zeros((0, n_chains)) for k in keys}
    return {k: np.stack([row[k] for row in rows]) for k in keys}


def _show(bar, stats_rows, n_burnin: int, counts: np.ndarray, n_new: int) -> None:
    sampled = [row.get("acceptance_rate", np.nan) for row in stats_rows[n_burnin:]]
    shown = {"accept": f"{np.mean(sampled):.2f}" if sampled else "burn-in"}
    shown["kept"] = int(counts.sum())
    shown["diverging"] = int(sum(np.sum(row.get("diverging", 0)) for row in stats_rows))
    bar.set_postfix(shown)
    bar.update(n_new)
