"""Dense full-rank bilinear scoring: one unconstrained D×D matrix per head.

The full-rank end of the bilinear family that BTT and bilinear MLR sit in (REFERENCE §2.1
table, "Dense"): like BTT, the query side is the raw token, the key is k̃_{h,j} = LN_D(W_h x_j)
and the logit is x_iᵀ k̃_{h,j} · scale.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from bnn_shift.attention.base import Scorer, check_tokens
from bnn_shift.attention.core import Core
from bnn_shift.attention.norm import LayerNorm


def bilinear_scale(d_model: int, mup_logits: bool) -> float:
    """1/sqrt(D), or 1/D with the muP flag (the bilinear BTT rule, REFERENCE §2.7)."""
    return 1.0 / d_model if mup_logits else 1.0 / math.sqrt(d_model)


class DenseScorer(Scorer):
    """H full D×D bilinear forms: logits x_iᵀ LN_D(W_h x_j) · scale.

    key_norm: the LayerNorm over D on W_h x_j (QK-LN, on by default); with it off the logits
    are exactly x_iᵀ matrix()[h] x_j. cap: RMS-cap W like a structured core (off by default).
    Parameters: `weight.weight` (H, D, D) (rows: output dims), `key_norm.weight` (D,).
    """

    weight: Core
    key_norm: LayerNorm | None
    d_model: int = eqx.field(static=True)
    n_heads: int = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        *,
        key: jax.Array,
        key_norm: bool = True,
        mup_logits: bool = False,
        cap: bool = False,
    ):
        if n_heads < 1 or d_model < 1:
            raise ValueError(f"need d_model, n_heads >= 1, got {d_model}, {n_heads}")
        self.weight = Core((n_heads, d_model, d_model), d_model, d_model, key=key, cap=cap)
        self.key_norm = LayerNorm(d_model) if key_norm else None
        self.d_model = d_model
        self.n_heads = n_heads
        self.scale = bilinear_scale(d_model, mup_logits)

    def features(self, xq: jax.Array, xk: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(T, D), (S, D) -> q (H, T, D) (the raw tokens), k (H, S, D)."""
        check_tokens(xq, self.d_model, "query-side tokens")
        check_tokens(xk, self.d_model, "key-side tokens")
        k = jnp.einsum("hij,sj->hsi", self.weight.value(), xk)  # (H, S, D)
        if self.key_norm is not None:
            k = self.key_norm(k)
        q = jnp.broadcast_to(xq, (self.n_heads, *xq.shape))
        return q, k

    def matrix(self) -> jax.Array:
        """(H, D, D): scale · W_h (the key LayerNorm left out)."""
        return self.scale * self.weight.value()
