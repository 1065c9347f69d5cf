"""Quantisation of subspace weights to L learned levels (REF 3.2).

Forward, each weight is replaced by its nearest level. Backward (straight-through): the weight
receives the gradient of its quantised value unchanged, and each level receives the sum of the
gradients of the weights assigned to it, so weights and levels train jointly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

LEVEL_INITS = ("uniform", "kmeans")
KMEANS_ITERATIONS = 100
CODEBOOK_DTYPES = ("float16", "float32")


def _check(w: np.ndarray, n_levels: int) -> np.ndarray:
    w = np.asarray(w, np.float64).reshape(-1)
    if w.size == 0:
        raise ValueError("nothing to quantise: the weight vector is empty")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights contain NaN or inf; the subspace fit diverged")
    if not isinstance(n_levels, int | np.integer) or n_levels < 1:
        raise ValueError(f"n_levels must be a positive integer, got {n_levels}")
    return w


def uniform_levels(w: np.ndarray, n_levels: int) -> np.ndarray:  # (L,)
    """L + 1 equal-width edges on [-max|w|, max|w|]; each level is the mean of the weights in
    its bin (the bin centre when the bin is empty)."""
    w = _check(w, n_levels)
    top = max(float(np.abs(w).max()), np.finfo(np.float32).tiny)
    edges = np.linspace(-top, top, n_levels + 1)
    which = np.clip(np.searchsorted(edges, w, side="right") - 1, 0, n_levels - 1)
    sums = np.bincount(which, weights=w, minlength=n_levels)
    counts = np.bincount(which, minlength=n_levels)
    centres = (edges[:-1] + edges[1:]) / 2
    return np.where(counts > 0, sums / np.maximum(counts, 1), centres).astype(np.float32)


def kmeans_levels(w: np.ndarray, n_levels: int, n_iter: int = KMEANS_ITERATIONS) -> np.ndarray:
    """1-D k-means (Lloyd's iterations from the quantiles) with L clusters -> sorted levels."""
    w = np.sort(_check(w, n_levels))
    levels = np.quantile(w, (np.arange(n_levels) + 0.5) / n_levels)
    for _ in range(n_iter):
        bounds = (levels[:-1] + levels[1:]) / 2
        which = np.searchsorted(bounds, w)
        sums = np.bincount(which, weights=w, minlength=n_levels)
        counts = np.bincount(which, minlength=n_levels)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), levels)
        if np.allclose(new, levels, rtol=0, atol=1e-12):
            break
        levels = np.sort(new)
    return levels.astype(np.float32)


def init_levels(w: np.ndarray, n_levels: int, method: str = "uniform") -> np.ndarray:  # (L,)
    """Initial codebook: "uniform" (equal-width bins) or "kmeans"."""
    if method == "uniform":
        return uniform_levels(w, n_levels)
    if method == "kmeans":
        return kmeans_levels(w, n_levels)
    raise ValueError(f"unknown level init {method!r}; choose from {', '.join(LEVEL_INITS)}")


def assign(w: jax.Array, levels: jax.Array) -> jax.Array:  # (d,) int32
    """Index of the nearest level of every weight (ties go to the lower index)."""
    return jnp.argmin(jnp.abs(w[:, None] - levels[None, :]), axis=1).astype(jnp.int32)


def quantize(w: jax.Array, levels: jax.Array) -> jax.Array:  # (d,)
    """Nearest-level values, with straight-through gradients to `w` and summed gradients to
    `levels`."""
    idx = jax.lax.stop_gradient(assign(w, levels))
    return (w - jax.lax.stop_gradient(w)) + levels[idx]


def round_levels(levels: np.ndarray, dtype: str) -> np.ndarray:  # (L,) float32
    """Levels as the coded `dtype` ("float16" or "float32") stores them, back in float32."""
    if dtype not in CODEBOOK_DTYPES:
        raise ValueError(f"codebook dtype must be 'float16' or 'float32', got {dtype!r}")
    stored = np.asarray(levels, np.float32).astype(dtype)
    if not np.all(np.isfinite(stored)):
        raise ValueError(f"a level overflows {dtype}; use codebook dtype 'float32'")
    return stored.astype(np.float32)


def bits_per_level(dtype: str) -> int:
    """Bits one codebook entry costs."""
    return {"float16": 16, "float32": 32}[dtype]
