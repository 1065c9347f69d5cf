"""Bilinear BTT scoring: each head's D×D matrix is a two-core Block Tensor-Train (REFERENCE §2.2).

With D = a·b = c·d (the factorisation rule below) and BTT rank s, head h's matrix is
M_h[α·b + β, γ·d + δ] = Σ_σ WQ[(h, β), α, (γ, σ)] · WK[γ, δ, (h, β, σ)]:
the right core maps each length-d chunk γ of x to b·s numbers per head, a fixed permutation
regroups them by β, and the left core maps each group of c·s numbers to a outputs. The
intermediate width is D·s, so M_h can reach full rank D already at s = 1.

Application: the query side is the raw token x_i; the key is k̃_{h,j} = LN_D(M_h x_j) (the
LayerNorm acts as QK-LN), and the logit is x_iᵀ k̃_{h,j} · scale, scale 1/sqrt(D) (1/D with
the muP flag). The score term costs T²·H·D per sequence (H times standard attention's T²·D).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from bnn_shift.attention.base import Scorer, check_tokens
from bnn_shift.attention.core import Core
from bnn_shift.attention.dense import bilinear_scale
from bnn_shift.attention.norm import LayerNorm


def btt_factors(d_model: int) -> tuple[int, int]:
    """(a, b) = (D/f, f) with f the smallest divisor of D greater than sqrt(D).

    64 -> (4, 16), 256 -> (8, 32), 768 -> (24, 32), 1024 -> (16, 64); never sqrt(D)×sqrt(D).
    """
    if d_model < 2:
        raise ValueError(f"BTT needs d_model >= 2, got {d_model}")
    root = math.sqrt(d_model)
    f = next(f for f in range(math.isqrt(d_model), d_model + 1) if f > root and d_model % f == 0)
    return d_model // f, f


def btt_params_per_head(d_model: int, rank: int = 1) -> int:
    """c·d·b·s + b·a·c·s = s·b·(D + c²) parameters of one head's two cores."""
    a, b = btt_factors(d_model)
    return rank * b * (d_model + a * a)


class BTTScorer(Scorer):
    """Bilinear BTT attention scores with H heads and BTT rank s (default 1).

    key_norm: LayerNorm over D on M_h x_j (on by default; with it off the logits are exactly
    x_iᵀ matrix()[h] x_j). input_norm: an extra LayerNorm on the tokens before the form (off by
    default, as in the reference). cap: RMS cap on both cores (on, as in the reference).
    Parameters: `wk.weight` (c, d, H·b·s) and `wq.weight` (H·b, a, c·s), `key_norm.weight` (D,).
    """

    wk: Core
    wq: Core
    key_norm: LayerNorm | None
    input_norm: LayerNorm | None
    d_model: int = eqx.field(static=True)
    n_heads: int = eqx.field(static=True)
    rank: int = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        key: jax.Array,
        rank: int = 1,
        key_norm: bool = True,
        input_norm: bool = False,
        mup_logits: bool = False,
        cap: bool = True,
    ):
        if n_heads < 1 or rank < 1:
            raise ValueError(f"BTT needs n_heads >= 1 and rank >= 1, got {n_heads}, {rank}")
        a, b = btt_factors(d_model)
        c, d = a, b
        kk, kq = jax.random.split(key)
        self.wk = Core((c, d, n_heads * b * rank), d, n_heads * b * rank, key=kk, cap=cap)
        self.wq = Core((n_heads * b, a, c * rank), c * rank, a, key=kq, cap=cap)
        self.key_norm = LayerNorm(d_model) if key_norm else None
        self.input_norm = LayerNorm(d_model) if input_norm else None
        self.d_model = d_model
        self.n_heads = n_heads
        self.rank = rank
        self.scale = bilinear_scale(d_model, mup_logits)

    @property
    def factors(self) -> tuple[int, int]:
        """(a, b) = (c, d) of the factorisation D = a·b."""
        return btt_factors(self.d_model)

    def _cores(self) -> tuple[jax.Array, jax.Array]:
        """-> WK as (c, d, H, b, s) and WQ as (H, b, a, c, s), both capped."""
        a, b = self.factors
        h, s = self.n_heads, self.rank
        wk = self.wk.value().reshape(a, b, h, b, s)
        wq = self.wq.value().reshape(h, b, a, a, s)
        return wk, wq

    def apply(self, x: jax.Array) -> jax.Array:
        """(S, D) -> (H, S, D): M_h x_j for every head, by two core contractions."""
        a, b = self.factors
        wk, wq = self._cores()
        chunks = x.reshape(x.shape[0], a, b)  # (S, c, d)
        mid = jnp.einsum("tgd,gdhbs->thbgs", chunks, wk)  # (S, H, b, c, s)
        out = jnp.einsum("thbgs,hbags->htab", mid, wq)  # (H, S, a, b)
        return out.reshape(self.n_heads, x.shape[0], self.d_model)

    def features(self, xq: jax.Array, xk: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(T, D), (S, D) -> q (H, T, D) (the raw tokens), k̃ (H, S, D)."""
        check_tokens(xq, self.d_model, "query-side tokens")
        check_tokens(xk, self.d_model, "key-side tokens")
        if self.input_norm is not None:
            xq, xk = self.input_norm(xq), self.input_norm(xk)
        k = self.apply(xk)
        if self.key_norm is not None:
            k = self.key_norm(k)
        return jnp.broadcast_to(xq, (self.n_heads, *xq.shape)), k

    def matrix(self) -> jax.Array:
        """(H, D, D): scale · M_h (key and input LayerNorms left out)."""
        wk, wq = self._cores()
        m = jnp.einsum("hbags,gdhbs->habgd", wq, wk)  # (H, a, b, c, d)
        return self.scale * m.reshape(self.n_heads, self.d_model, self.d_model)
