"""LayerNorm over the last axis, without bias (the structured-attention paper's convention)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp


class LayerNorm(eqx.Module):
    """Normalise the last axis to zero mean and unit variance, then scale by `weight`.

    Acts on any leading shape `(..., size)`; the weight (initialised to 1) is shared across
    the leading axes. There is no bias, as in the paper's models.
    """

    weight: jax.Array | None  # (size,)
    size: int = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(self, size: int, *, use_weight: bool = True, eps: float = 1e-5):
        if size < 1:
            raise ValueError(f"LayerNorm needs size >= 1, got {size}")
        self.weight = jnp.ones((size,), jnp.float32) if use_weight else None
        self.size = size
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        """(..., size) -> (..., size)."""
        if x.shape[-1] != self.size:
            raise ValueError(f"LayerNorm({self.size}) got an input whose last axis is {x.shape}")
        mean = jnp.mean(x, axis=-1, keepdims=True)
        centred = x - mean
        var = jnp.mean(centred * centred, axis=-1, keepdims=True)
        y = centred * jax.lax.rsqrt(var + self.eps)
        return y if self.weight is None else y * self.weight
