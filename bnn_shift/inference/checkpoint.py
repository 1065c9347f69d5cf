"""Atomic, pickle-free checkpoints of pytrees of arrays (npz files written then renamed)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bnn_shift.models.params import PyTree


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
