"""Additive Gaussian noise in normalised input units, and the `Shift` record."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Shift", "gaussian_noise", "noise_sweep"]

_MAX_INDEX = 2**32


def _check_uint32(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    if not 0 <= int(value) < _MAX_INDEX:
        raise ValueError(f"{name} must lie in [0, 2**32); got {value}")


def _cpu_device() -> jax.Device | None:
    """The host CPU device, or `None` (JAX's default) when JAX was started without one."""
    try:
        return jax.devices("cpu")[0]
    except RuntimeError:
        return None


@dataclass(frozen=True)
class Shift:
    """A named covariate shift at one severity.

    `apply` maps a whole input batch `(n, ...)` to a shifted batch of the same
    shape; it must be deterministic so every method sees the same shifted inputs.
    """

    name: str
    severity: float
    apply: Callable[[np.ndarray], np.ndarray]


@functools.partial(jax.jit, static_argnums=(1,))
def _standard_normal_rows(key: jax.Array, row_shape: tuple[int, ...], rows: jax.Array):
    """Noise `(len(rows), *row_shape)`; row `r` depends only on `key` and `rows[r]`."""
    draw = lambda i: jax.random.normal(jax.random.fold_in(key, i), row_shape, jnp.float32)
    return jax.vmap(draw)(rows)


def gaussian_noise(x: ArrayLike, std: float, seed: int, *, first_index: int = 0) -> np.ndarray:
    """Return `x + std * N(0, 1)` noise as float32 with the shape of `x` `(n, ...)`.

    Deterministic given `seed`. Each example's noise depends only on `seed` and its
    global index `first_index + i`, so noising a chunk `x[a:b]` with
    `first_index=a` gives exactly the rows `a:b` of noising the whole of `x`.
    Noise comes from JAX's threefry generator evaluated on the CPU, so it does not
    depend on the default PRNG implementation or on which accelerator is present.
    `std == 0` returns `x` (as float32) unchanged.
    """
    std = float(std)
    if not math.isfinite(std) or std < 0:
        raise ValueError(f"std must be finite and >= 0; got {std}")
    _check_uint32("seed", seed)
    _check_uint32("first_index", first_index)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 1:
        raise ValueError("x must have shape (n, ...); got a scalar")
    if first_index + x.shape[0] > _MAX_INDEX:
        raise ValueError(f"first_index + n must be <= 2**32; got {first_index + x.shape[0]}")
    if std == 0.0 or x.shape[0] == 0:
        return x
    with jax.default_device(_cpu_device()):
        key = jax.random.key(int(seed), impl="threefry2x32")
        rows = jnp.asarray(np.arange(first_index, first_index + x.shape[0], dtype=np.uint32))
        noise = np.asarray(_standard_normal_rows(key, tuple(x.shape[1:]), rows))
    return (x + np.float32(std) * noise).astype(np.float32, copy=False)


def noise_sweep(
    stds: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0), seed: int = 0
) -> list[Shift]:
    """One `Shift` per noise level, all named `"gaussian_noise"` with severity = std.

    Severity 0 is the clean set (kept under the same name so a sweep plots as one
    curve). All levels share `seed`, so higher severities scale the same noise draw.
    """
    _check_uint32("seed", seed)
    shifts = []
    for std in stds:
        s = float(std)
        if not math.isfinite(s) or s < 0:
            raise ValueError(f"noise stds must be finite and >= 0; got {std}")
        shifts.append(
            Shift("gaussian_noise", s, functools.partial(gaussian_noise, std=s, seed=seed))
        )
    return shifts
