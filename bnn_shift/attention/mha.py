"""Multi-head self-attention from a scorer (how tokens compare) and a structure (which interact)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from bnn_shift.attention.base import Scorer, Structure, check_tokens
from bnn_shift.attention.core import apply_linear, linear, per_head_width
from bnn_shift.attention.structures import Full


class MultiHeadAttention(eqx.Module):
    """Self-attention on one sequence (T, D) -> (T, D).

    The scorer gives q, k features per head, the structure turns them into weights over
    positions, which mix dense values v = x W_V (H heads of d_value = D/H dims by default);
    the heads are concatenated and projected back by `out_proj`.
    Parameters: `scorer.*`, `value.weight` (H·d_value, D), `out_proj.weight` (D, H·d_value).
    `mup_init` zeroes `out_proj` (REFERENCE §2.7); the constructor draws it N(0, 1/fan_in).
    """

    scorer: Scorer
    structure: Structure
    value: eqx.nn.Linear
    out_proj: eqx.nn.Linear
    d_model: int = eqx.field(static=True)
    n_heads: int = eqx.field(static=True)
    d_value: int = eqx.field(static=True)

    def __init__(
        self,
        scorer: Scorer,
        structure: Structure | None = None,
        *,
        key: jax.Array,
        d_value: int | None = None,
        use_bias: bool = False,
    ):
        d_model, n_heads = scorer.d_model, scorer.n_heads
        d_value = per_head_width(d_model, n_heads, d_value, "d_value")
        kv, ko = jax.random.split(key)
        self.scorer = scorer
        self.structure = Full() if structure is None else structure
        self.value = linear(d_model, n_heads * d_value, key=kv, use_bias=use_bias)
        self.out_proj = linear(n_heads * d_value, d_model, key=ko, use_bias=use_bias)
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_value = d_value

    def _values(self, x: jax.Array) -> jax.Array:
        v = apply_linear(self.value, x).reshape(x.shape[0], self.n_heads, self.d_value)
        return jnp.swapaxes(v, 0, 1)  # (H, T, d_value)

    def attention_weights(self, x: jax.Array) -> jax.Array:
        """(T, D) -> (H, T, T) attention weights."""
        check_tokens(x, self.d_model)
        q, k = self.scorer.features(x, x)
        return self.structure.weights(q, k, self.scorer.scale)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(T, D) -> (T, D)."""
        check_tokens(x, self.d_model)
        q, k = self.scorer.features(x, x)  # (H, T, e) each
        mixed = self.structure(q, k, self._values(x), self.scorer.scale)  # (H, T, d_value)
        heads = jnp.swapaxes(mixed, 0, 1).reshape(x.shape[0], -1)  # (T, H d_value)
        return apply_linear(self.out_proj, heads)
