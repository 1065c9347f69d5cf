"""Kept draws streamed to a run directory: one file per (iteration, chain) under
`run_dir/draws/`, stacked into memory-mapped `draws-<leaf>.npy` at the end of a run."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from bnn_shift.inference.checkpoint import CheckpointError, arrays_to_tree, load_arrays
from bnn_shift.inference.sharding import is_writer
from bnn_shift.typing import PyTree

DRAWS_DIR = "draws"


def draw_file_name(iteration: int, chain: int) -> str:
    return f"iter{iteration:07d}_chain{chain:04d}.npz"


def kept_draw_names(
    stats: Mapping[str, np.ndarray], n_burnin: int, thin: int, keep: str
) -> list[str]:
    """The draw files a run directory must hold, in order, from the run's stats
    (n_iterations, n_chains): every thin-th post-burn-in iteration of each chain (with
    keep="accepted", the chains that accepted there)."""
    n_done, n_chains = stats["log_density"].shape
    names = []
    for i in range(n_burnin, n_done, thin):
        kept = stats["accepted"][i] if keep == "accepted" else np.ones(n_chains, bool)
        names += [draw_file_name(i, int(c)) for c in np.flatnonzero(kept)]
    return names


def stack_streamed_draws(
    run_dir: Path, position: PyTree, names: list[str]
) -> tuple[PyTree, np.ndarray]:
    """The kept draws `names` (files of run_dir/draws) as memory-mapped `draws-<leaf>.npy`
    stacks (n_draws, ...) and their chains. A missing file is left out with a warning; a
    damaged one raises a CheckpointError naming it.

    Files are filled one draw at a time, so host memory stays at one draw however many are kept.
    Process 0 writes them; the other processes of a multi-host run wait, then map them.
    """
    leaves, treedef = jax.tree.flatten(position)
    if not is_writer():
        multihost_utils.sync_global_devices("bnn_shift draws written")
        stacks = [np.load(run_dir / f"draws-{i}.npy", mmap_mode="r") for i in range(len(leaves))]
        return jax.tree.unflatten(treedef, stacks), np.load(run_dir / "draws-chain.npy")
    paths = [run_dir / DRAWS_DIR / name for name in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        warnings.warn(
            f"{run_dir / DRAWS_DIR} lacks {len(missing)} of the run's {len(paths)} kept draws "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): deleted after "
            "they were written. The posterior holds the others (its running predictions are "
            "complete); run again into a fresh run_dir for all of them",
            stacklevel=5,
        )
        paths = [p for p in paths if p.is_file()]
    stacks = [
        np.lib.format.open_memmap(
            run_dir / f"draws-{i}.npy", "w+", leaf.dtype, (len(paths), *leaf.shape[1:])
        )
        for i, leaf in enumerate(leaves)
    ]
    like = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(a.shape[1:], a.dtype) for a in leaves])
    chains = np.zeros(len(paths), np.int32)
    for row, path in enumerate(paths):
        try:
            arrays, meta = load_arrays(path)
            values = jax.tree.leaves(arrays_to_tree(arrays, "params", like))
            chains[row] = meta["chain"]
        except (CheckpointError, KeyError, ValueError) as err:
            raise CheckpointError(
                f"kept draw {path} cannot be read ({err}); delete that file to finish the run "
                "without it, or run again into a fresh run_dir"
            ) from err
        for stack, value in zip(stacks, values):
            stack[row] = value
    for stack in stacks:
        stack.flush()
    np.save(run_dir / "draws-chain.npy", chains)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("bnn_shift draws written")
    return jax.tree.unflatten(treedef, stacks), chains


def remove_draws_from(run_dir: Path, first: int, keep_draws: bool) -> None:
    """Delete run_dir's draw files of iterations >= first (written after the last checkpoint,
    or by an earlier run when there is no checkpoint), saying so when they predate this run."""
    if not (keep_draws and is_writer()):
        return
    stale = [
        p for p in (run_dir / DRAWS_DIR).glob("iter*_chain*.npz") if int(p.name[4:11]) >= first
    ]
    if stale and first == 0:
        warnings.warn(
            f"{run_dir} has no checkpoint but {len(stale)} kept-draw files of an earlier run in "
            f"{run_dir / DRAWS_DIR}; starting afresh and removing them",
            stacklevel=6,
        )
    for path in stale:
        path.unlink()
