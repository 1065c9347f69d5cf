"""Split a model into its parameters (the HMC position) and static structure, and name them."""

from __future__ import annotations

import equinox as eqx
import jax

from bnn_shift.typing import PyTree


def partition_params(model: PyTree) -> tuple[PyTree, PyTree]:
    """Model -> (params, static): params holds every inexact array, static the rest."""
    return eqx.partition(model, eqx.is_inexact_array)


def combine_params(params: PyTree, static: PyTree) -> PyTree:
    """Inverse of `partition_params`."""
    return eqx.combine(params, static)


def path_to_str(path: tuple) -> str:
    """A jax key path -> dotted name such as `layers.0.weight`."""
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.GetAttrKey):
            parts.append(key.name)
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.FlattenedIndexKey):
            parts.append(str(key.key))
        else:
            parts.append(str(key))
    return ".".join(parts)


def param_paths(params: PyTree) -> list[str]:
    """Dotted names of the array leaves of `params`, in flattening order."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return [path_to_str(path) for path, _ in leaves]
