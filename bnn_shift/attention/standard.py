"""Standard multi-head scoring: per-head projections to rank r = D/H, with QK-LayerNorm.

Head h scores x_iᵀ W_Q^h W_K^hᵀ x_j · scale, a bilinear form of rank <= r (REFERENCE §2.1).
QK-LayerNorm (one LayerNorm over the r head dims, shared by the heads) acts on the projected
queries and keys; `matrix()` describes the form with it switched off.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from bnn_shift.attention.base import Scorer, check_tokens
from bnn_shift.attention.core import apply_linear, linear, per_head_width
from bnn_shift.attention.norm import LayerNorm


def standard_scale(head_dim: int, mup_logits: bool) -> float:
    """8/r (the reference's muP default) or 1/sqrt(r) (standard parameterisation)."""
    return 8.0 / head_dim if mup_logits else 1.0 / math.sqrt(head_dim)


class StandardScorer(Scorer):
    """Multi-head low-rank scoring: q = LN(x W_Q^h), k = LN(x W_K^h), each of `head_dim` dims.

    d_model: D; n_heads: H; head_dim: r (default D/H; H = 1, r = D is full-rank MHA).
    qk_norm: per-head QK-LayerNorm (reference default on). mup_logits: logit scale 8/r
    (reference default) instead of 1/sqrt(r). use_bias: biases on the projections (off in
    the paper; `matrix()` then describes the linear part only).
    Parameters: `query.weight` (H r, D), `key.weight` (H r, D), `q_norm.weight`, `k_norm.weight`.
    """

    query: eqx.nn.Linear
    key: eqx.nn.Linear
    q_norm: LayerNorm | None
    k_norm: LayerNorm | None
    d_model: int = eqx.field(static=True)
    n_heads: int = eqx.field(static=True)
    head_dim: int = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        key: jax.Array,
        head_dim: int | None = None,
        qk_norm: bool = True,
        mup_logits: bool = True,
        use_bias: bool = False,
    ):
        if n_heads < 1 or d_model < 1:
            raise ValueError(f"need d_model, n_heads >= 1, got {d_model}, {n_heads}")
        head_dim = per_head_width(d_model, n_heads, head_dim, "head_dim")
        kq, kk = jax.random.split(key)
        self.query = linear(d_model, n_heads * head_dim, key=kq, use_bias=use_bias)
        self.key = linear(d_model, n_heads * head_dim, key=kk, use_bias=use_bias)
        self.q_norm = LayerNorm(head_dim) if qk_norm else None
        self.k_norm = LayerNorm(head_dim) if qk_norm else None
        self.d_model = d_model
        self.n_heads = n_heads
        self.head_dim = head_dim
        self.scale = standard_scale(head_dim, mup_logits)

    def _heads(self, layer: eqx.nn.Linear, x: jax.Array, norm: LayerNorm | None) -> jax.Array:
        y = apply_linear(layer, x).reshape(x.shape[0], self.n_heads, self.head_dim)  # (T, H, r)
        y = jnp.swapaxes(y, 0, 1)  # (H, T, r)
        return y if norm is None else norm(y)

    def features(self, xq: jax.Array, xk: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(T, D), (S, D) -> q (H, T, r), k (H, S, r)."""
        check_tokens(xq, self.d_model, "query-side tokens")
        check_tokens(xk, self.d_model, "key-side tokens")
        return self._heads(self.query, xq, self.q_norm), self._heads(self.key, xk, self.k_norm)

    def matrix(self) -> jax.Array:
        """(H, D, D): scale · W_Q^h W_K^hᵀ (QK-LayerNorm and biases left out)."""
        wq = self.query.weight.reshape(self.n_heads, self.head_dim, self.d_model)  # (H, r, D)
        wk = self.key.weight.reshape(self.n_heads, self.head_dim, self.d_model)
        return self.scale * jnp.einsum("hri,hrj->hij", wq, wk)
