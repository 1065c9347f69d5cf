"""Parameter tensors of the attention layers: structured cores (with the RMS cap) and dense maps.

Every tensor starts as N(0, 1/fan_in), the muP initialisation of REFERENCE §2.7; `mup_init`
(bnn_shift.attention.mup) re-draws a whole model by the full table (zero output projections,
small embeddings). A `Core` is used through its RMS cap
W <- W / max(1, RMS(W)/rho), rho = sqrt(min(d_in, d_out)) / d_in, which keeps each core's
spectral norm near the muP target sqrt(d_out/d_in) (the compute-better-spent rule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp


def rms_cap(weight: jax.Array, d_in: int, d_out: int) -> jax.Array:
    """weight / max(1, RMS(weight)/rho) with rho = sqrt(min(d_in, d_out)) / d_in."""
    rho = math.sqrt(min(d_in, d_out)) / d_in
    rms = jnp.sqrt(jnp.mean(weight * weight) + 1e-8)
    return weight / jnp.maximum(1.0, rms / rho)


class Core(eqx.Module):
    """One structured core tensor: stored raw, read through `value()` (RMS-capped when `cap`).

    `d_in` is the core's fan-in (the length of the vectors it contracts) and `d_out` its output
    width; both set the cap and the muP learning-rate multiplier base/d_in.
    """

    weight: jax.Array
    d_in: int = eqx.field(static=True)
    d_out: int = eqx.field(static=True)
    cap: bool = eqx.field(static=True)

    def __init__(
        self, shape: Sequence[int], d_in: int, d_out: int, *, key: jax.Array, cap: bool = True
    ):
        if d_in < 1 or d_out < 1:
            raise ValueError(f"a core needs d_in, d_out >= 1, got d_in={d_in}, d_out={d_out}")
        self.weight = jax.random.normal(key, tuple(shape), jnp.float32) / math.sqrt(d_in)
        self.d_in = d_in
        self.d_out = d_out
        self.cap = cap

    def value(self) -> jax.Array:
        """The weight as the forward pass uses it."""
        return rms_cap(self.weight, self.d_in, self.d_out) if self.cap else self.weight


def per_head_width(d_model: int, n_heads: int, width: int | None, name: str) -> int:
    """A per-head width: `width` as given, or D/H, which must then divide evenly."""
    if width is not None:
        return width
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}; pass {name}")
    return d_model // n_heads


def linear(d_in: int, d_out: int, *, key: jax.Array, use_bias: bool = False) -> eqx.nn.Linear:
    """An `eqx.nn.Linear` (weight (d_out, d_in)) drawn N(0, 1/d_in), bias zero."""
    # the skeleton skips equinox's own uniform draw, which would be thrown away
    layer = eqx.filter_eval_shape(eqx.nn.Linear, d_in, d_out, use_bias=use_bias, key=key)
    weight = jax.random.normal(key, (d_out, d_in), jnp.float32) / math.sqrt(d_in)
    layer = eqx.tree_at(lambda m: m.weight, layer, weight)
    if use_bias:
        layer = eqx.tree_at(lambda m: m.bias, layer, jnp.zeros((d_out,), jnp.float32))
    return layer


def apply_linear(layer: eqx.nn.Linear, x: jax.Array) -> jax.Array:
    """(..., d_in) -> (..., d_out): a Linear applied to every row."""
    y = x @ layer.weight.T
    return y if layer.bias is None else y + layer.bias
