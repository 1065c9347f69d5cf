"""A pre-LayerNorm transformer block: x + attention(LN(x)), then x + FeedForward(LN(x))."""

from __future__ import annotations

import equinox as eqx
import jax

from bnn_shift.attention.core import apply_linear, linear
from bnn_shift.attention.mha import MultiHeadAttention
from bnn_shift.attention.norm import LayerNorm


class FeedForward(eqx.Module):
    """Token-wise D -> hidden -> D with the exact (erf) GELU; `fc.weight`, `out_proj.weight`."""

    fc: eqx.nn.Linear
    out_proj: eqx.nn.Linear

    def __init__(self, d_model: int, hidden: int, *, key: jax.Array, use_bias: bool = False):
        if d_model < 1 or hidden < 1:
            raise ValueError(f"FeedForward needs d_model, hidden >= 1, got {d_model}, {hidden}")
        k1, k2 = jax.random.split(key)
        self.fc = linear(d_model, hidden, key=k1, use_bias=use_bias)
        self.out_proj = linear(hidden, d_model, key=k2, use_bias=use_bias)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(T, D) -> (T, D)."""
        return apply_linear(self.out_proj, jax.nn.gelu(apply_linear(self.fc, x), approximate=False))


class TransformerBlock(eqx.Module):
    """Pre-LN block around a `MultiHeadAttention`: (T, D) -> (T, D).

    mlp_ratio: the `FeedForward`'s hidden width is mlp_ratio·D (4, as in GPT). LayerNorms have
    no bias. Parameters: `norm1.weight`, `attention.*`, `norm2.weight`, `mlp.fc.weight`,
    `mlp.out_proj.weight`.
    """

    norm1: LayerNorm
    attention: MultiHeadAttention
    norm2: LayerNorm
    mlp: FeedForward

    def __init__(
        self,
        attention: MultiHeadAttention,
        *,
        key: jax.Array,
        mlp_ratio: int = 4,
        use_bias: bool = False,
    ):
        d = attention.d_model
        self.norm1 = LayerNorm(d)
        self.attention = attention
        self.norm2 = LayerNorm(d)
        self.mlp = FeedForward(d, mlp_ratio * d, key=key, use_bias=use_bias)

    @property
    def d_model(self) -> int:
        return self.attention.d_model

    def __call__(self, x: jax.Array) -> jax.Array:
        """(T, D) -> (T, D)."""
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))
