"""Data-parallel placement: the training set split on its batch axis over a device mesh, chains
split (or replicated) over a second mesh axis. XLA inserts the cross-device sums, so the HMC
kernel is the same program on 1 device, N local devices or several hosts."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from bnn_shift.typing import PyTree

CHAIN, DATA = "chain", "data"


def make_mesh(n_chains: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (chain, data) mesh over `devices` (default: all): as many chain shards as divide both
    n_chains and the device count; the remaining devices split the data."""
    devices = list(devices if devices is not None else jax.devices())
    chain_shards = np.gcd(n_chains, len(devices))
    grid = np.asarray(devices, dtype=object).reshape(chain_shards, len(devices) // chain_shards)
    return Mesh(grid, (CHAIN, DATA))


def pad_to_multiple(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def place_data(x: np.ndarray, y: np.ndarray, mesh: Mesh) -> tuple[jax.Array, ...]:
    """-> (x, y, mask) sharded on the batch axis; padded rows have mask 0 and count for nothing."""
    n = len(x)
    size = pad_to_multiple(n, mesh.shape[DATA])
    mask = np.zeros(size, np.float32)
    mask[:n] = 1.0
    x = np.concatenate([x, np.zeros((size - n, *x.shape[1:]), x.dtype)])
    y = np.concatenate([y, np.zeros((size - n, *y.shape[1:]), y.dtype)])
    return tuple(_put(a, NamedSharding(mesh, P(DATA))) for a in (x, y, mask))


def place_chains(tree: PyTree, mesh: Mesh) -> PyTree:
    """Leaves with a leading chain axis, split over the mesh's chain axis."""
    return jax.tree.map(lambda a: _put(np.asarray(a), NamedSharding(mesh, P(CHAIN))), tree)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    return jax.tree.map(lambda a: _put(np.asarray(a), NamedSharding(mesh, P())), tree)


def to_host(tree: PyTree) -> PyTree:
    """Numpy copies of (global) arrays; parts held by other hosts are gathered first."""

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    return jax.tree.map(one, tree)


def like_placed(host: PyTree, placed: PyTree) -> PyTree:
    """Host arrays put back with the shardings of `placed` (e.g. a state read from disk)."""
    return jax.tree.map(lambda h, p: _put(np.asarray(h), p.sharding), host, placed)


def is_writer() -> bool:
    """Only process 0 writes run files, so several hosts can share one run directory."""
    return jax.process_index() == 0


def _put(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from the host copy each process holds (works across hosts)."""
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def masked(loglik: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.where(mask > 0, loglik, 0.0)
