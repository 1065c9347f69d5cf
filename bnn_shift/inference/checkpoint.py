"""Atomic, pickle-free checkpoints of pytrees of arrays (npz files written then renamed)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bnn_shift.typing import PyTree


def save_arrays(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write named arrays and JSON metadata to `path` atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, __meta__=np.asarray(json.dumps(meta)), **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of `save_arrays`; never unpickles."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k != "__meta__"}
        meta = json.loads(str(f["__meta__"]))
    return arrays, meta


def tree_to_arrays(tree: PyTree, prefix: str) -> dict[str, np.ndarray]:
    """Flatten a pytree of arrays to {prefix/i: array} in leaf order (keys PRNG-unwrapped)."""
    out = {}
    for i, leaf in enumerate(jax.tree.leaves(tree)):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out[f"{prefix}/{i}"] = np.asarray(leaf)
    return out


def arrays_to_tree(arrays: dict[str, np.ndarray], prefix: str, like: PyTree) -> PyTree:
    """Inverse of `tree_to_arrays` given a pytree `like` of the same structure."""
    leaves, treedef = jax.tree.flatten(like)
    restored = []
    for i, leaf in enumerate(leaves):
        value = arrays[f"{prefix}/{i}"]
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            value = jax.random.wrap_key_data(value)
        elif value.shape != leaf.shape or value.dtype != leaf.dtype:
            raise ValueError(
                f"checkpoint entry {prefix}/{i} has {value.dtype}{value.shape}, "
                f"expected {leaf.dtype}{leaf.shape}: was it written by a different run?"
            )
        restored.append(value)
    return jax.tree.unflatten(treedef, restored)


STATE_FILE = "checkpoint.npz"


def save_run_state(
    run_dir: Path, state: PyTree, arrays: dict[str, np.ndarray], completed: int, fingerprint: dict
) -> None:
    """Checkpoint a driver: its engine state (host arrays), named extra arrays, the number of
    iterations (or epochs) done and the fingerprint of the run's settings."""
    arrays = tree_to_arrays(state, "state") | arrays
    meta = {"completed": completed, "fingerprint": fingerprint}
    save_arrays(Path(run_dir) / STATE_FILE, arrays, meta)


def load_run_state(
    run_dir: Path, state_like: PyTree, fingerprint: dict
) -> tuple[PyTree, dict[str, np.ndarray], int] | None:
    """-> (host state shaped like `state_like`, the extra arrays, iterations done), or None when
    run_dir holds no checkpoint; a ValueError when it holds one of a different run."""
    path = Path(run_dir) / STATE_FILE
    if not path.exists():
        return None
    arrays, meta = load_arrays(path)
    if meta.get("fingerprint") != json.loads(json.dumps(fingerprint)):
        raise ValueError(
            f"{path} holds a checkpoint of a different run ({meta.get('fingerprint')}); "
            f"this run is {fingerprint}. Use another run directory or delete it."
        )
    state = arrays_to_tree(arrays, "state", state_like)
    extras = {k: v for k, v in arrays.items() if not k.startswith("state/")}
    return state, extras, int(meta["completed"])


def prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The entries named `prefix/<name>`, as {name: array}."""
    return {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{prefix}/")}
