"""The subset a Laplace approximation covers: which leaves, and the flat vector (d,) of
their entries (row-major, in flattening order)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.models.params import path_to_str
from bnn_shift.priors.compose import Selector, selects
from bnn_shift.typing import PyTree

Subset = str | Sequence[Selector]


def select_leaves(params: PyTree, subset: Subset) -> tuple[int, ...]:
    """Leaf indices (flattening order) of the subset: "all", "last_layer" (the leaves of the
    module holding the last leaf, e.g. `layers.2.weight` and `layers.2.bias`), a path glob,
    or a list of `by_path` selectors (globs, module types, predicates)."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    paths = [path_to_str(p) for p, _ in flat]
    if subset == "all":
        return tuple(range(len(flat)))
    if subset == "last_layer":
        owner = paths[-1].rpartition(".")[0]
        return tuple(i for i, p in enumerate(paths) if p.rpartition(".")[0] == owner)
    selectors = [subset] if isinstance(subset, str) or not isinstance(subset, Sequence) else subset
    chosen = tuple(
        i
        for i, (key_path, leaf) in enumerate(flat)
        if any(selects(s, params, key_path, leaf) for s in selectors)
    )
    if not chosen:
        raise ValueError(
            f"subset {subset!r} matches no parameter; use 'all', 'last_layer', a path glob or a "
            f"list of by_path selectors; parameter paths are {paths}"
        )
    return chosen


def _unravel(theta: jax.Array, shapes: tuple[tuple[int, ...], ...]) -> list[jax.Array]:
    """Flat (d,) vector -> leaves of the given shapes (row-major, in order)."""
    sizes = [math.prod(s) for s in shapes]
    cuts = np.cumsum(sizes)[:-1].tolist()
    return [part.reshape(s) for part, s in zip(jnp.split(theta, cuts), shapes)]


def _with_subset(
    params: PyTree, selected: tuple[int, ...], theta: jax.Array
) -> PyTree:  # params with the subset's leaves read from theta (d,)
    leaves, treedef = jax.tree.flatten(params)
    shapes = tuple(tuple(leaves[i].shape) for i in selected)
    for i, value in zip(selected, _unravel(theta, shapes)):
        leaves[i] = value.astype(leaves[i].dtype)
    return jax.tree.unflatten(treedef, leaves)


def _subset_vector(params: PyTree, selected: tuple[int, ...]) -> np.ndarray:  # (d,) float64
    leaves = jax.tree.leaves(params)
    return np.concatenate([np.asarray(leaves[i], np.float64).ravel() for i in selected])


def _subset_vector_device(params: PyTree, selected: tuple[int, ...]) -> jax.Array:
    """The subset's leaves as one float32 vector (d,), on the device."""
    leaves = jax.tree.leaves(params)
    return jnp.concatenate([leaves[i].ravel().astype(jnp.float32) for i in selected])


def _sizes(params: PyTree, selected: tuple[int, ...]) -> list[int]:
    leaves = jax.tree.leaves(params)
    return [int(leaves[i].size) for i in selected]


def _positions(sizes: list[int], which: list[int]) -> np.ndarray:
    """Positions in the subset vector of the leaves `which` (indices into `sizes`)."""
    starts = np.concatenate([[0], np.cumsum(sizes)])
    return np.concatenate([np.arange(starts[j], starts[j + 1]) for j in which])
