"""Atomic, pickle-free checkpoints of pytrees of arrays (npz files written then renamed)."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
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


class CheckpointError(ValueError):
    """A checkpoint or kept-draw file that cannot be read back."""


class OtherRunError(ValueError):
    """A run directory holding the checkpoint of a run with other settings or data."""

    def __init__(self, path: Path, difference: str):
        self.path, self.difference = path, difference
        super().__init__(
            f"{path} holds a checkpoint of a different run ({difference}). "
            "Use another run directory or delete it."
        )


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of `save_arrays`; never unpickles. A damaged or foreign file raises
    CheckpointError naming it (FileNotFoundError when there is none)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files if k != "__meta__"}
            meta = json.loads(str(f["__meta__"]))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"{path} is damaged or not a bnn_shift file ({_reason(err)})"
        ) from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is damaged or not a bnn_shift file (no metadata)")
    return arrays, meta


def _reason(err: BaseException) -> str:
    """What went wrong reading a file, without numpy's advice to allow pickles."""
    text = " ".join(str(err).split())
    if "pickle" in text:
        return "it holds Python objects, which are never loaded"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def data_digest(*arrays: np.ndarray) -> str:
    """sha256 over arrays' dtypes, shapes and bytes: which training data a run saw."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


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


# fingerprint entries added after checkpoints were first written: compared only when the
# checkpoint has them, so runs started before they existed still resume
LATER_KEYS = ("data_sha256",)


def load_run_state(
    run_dir: Path, state_like: PyTree, fingerprint: dict
) -> tuple[PyTree, dict[str, np.ndarray], int] | None:
    """-> (host state shaped like `state_like`, the extra arrays, iterations done), or None when
    run_dir holds no checkpoint; a ValueError when it holds one of a different run (other
    settings or other training data) and a CheckpointError when it is damaged."""
    path = Path(run_dir) / STATE_FILE
    if not path.exists():
        return None
    try:
        arrays, meta = load_arrays(path)
    except CheckpointError as err:
        raise CheckpointError(
            f"{err}; delete it to start this run afresh (its kept draws are then redone)"
        ) from err
    stored = meta.get("fingerprint")
    wanted = json.loads(json.dumps(fingerprint))
    if isinstance(stored, dict):
        wanted = {k: v for k, v in wanted.items() if k in stored or k not in LATER_KEYS}
    if stored != wanted:
        raise OtherRunError(path, _difference(stored, wanted))
    try:
        state = arrays_to_tree(arrays, "state", state_like)
        completed = int(meta["completed"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{path} is damaged ({_reason(err)}); delete it to start this run afresh"
        ) from err
    extras = {k: v for k, v in arrays.items() if not k.startswith("state/")}
    return state, extras, completed


def _difference(stored, wanted: dict) -> str:
    """The settings in which a checkpoint's fingerprint and this run's differ."""
    if not isinstance(stored, dict):
        return f"its settings are {stored}"
    keys = sorted(k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k))
    if keys == ["data_sha256"]:
        return "it was fitted to other training data"
    shown = ", ".join(f"{k}: {stored.get(k)!r} there, {wanted.get(k)!r} now" for k in keys[:4])
    return shown + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The entries named `prefix/<name>`, as {name: array}."""
    return {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{prefix}/")}
