"""Bilinear MLR scoring: a multi-level block-low-rank matrix per head (REFERENCE §2.3).

Level l = 1..L cuts the D features into p_l = 2^(l-1) contiguous chunks x^(k) of D/p_l and
gives each chunk its own rank-r_l pair of maps, with Σ_l r_l = d_head = D/H. Per level,
q_{l,h}(x) = concat_k L_{l,k}^hᵀ x^(k) and k_{l,h}(x) = concat_k R_{l,k}^hᵀ x^(k) (r_l·p_l
numbers each), and the logit is Σ_l scale_l · ⟨LN_l(q_{l,h}(x_i)), LN_l(k_{l,h}(x_j))⟩ with
scale_l = 1/sqrt(r_l p_l) (8/(r_l p_l) with the muP flag) and a LayerNorm of its own per level.
Without the LayerNorms this is x_iᵀ M_h x_j, M_h = Σ_l scale_l ⊕_k L_{l,k} R_{l,k}ᵀ, of rank
<= min(D, Σ_l r_l p_l), with exactly the 2·D·d_head parameters per head of standard attention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from bnn_shift.attention.base import Scorer, check_tokens
from bnn_shift.attention.core import Core
from bnn_shift.attention.norm import LayerNorm


def check_ranks(ranks: Sequence[int], total: int, what: str) -> tuple[int, ...]:
    """Validate per-level ranks (each >= 1) that must sum to `total`."""
    ranks = tuple(int(r) for r in ranks)
    if not ranks or any(r < 1 for r in ranks):
        raise ValueError(f"{what}: ranks must be a non-empty list of positive ints, got {ranks}")
    if sum(ranks) != total:
        raise ValueError(f"{what}: ranks {ranks} sum to {sum(ranks)}, but must sum to {total}")
    return ranks


def bilinear_mlr_scales(ranks: Sequence[int], mup_logits: bool) -> tuple[float, ...]:
    """scale_l = 1/sqrt(r_l p_l), or 8/(r_l p_l) with the muP flag, p_l = 2^(l-1)."""
    widths = [r * 2**level for level, r in enumerate(ranks)]
    return tuple(8.0 / w if mup_logits else 1.0 / math.sqrt(w) for w in widths)


class BilinearMLRScorer(Scorer):
    """Bilinear MLR attention scores with H heads and per-level ranks summing to D/H.

    ranks: (r_1, ..., r_L), e.g. (8, 4, 4, 16) at D = 256, H = 8; D must be divisible by
    2^(L-1). level_norm: the per-level LayerNorms (on by default; off, the logits are exactly
    x_iᵀ matrix()[h] x_j). cap: RMS cap on the cores (on, as in the reference).
    Parameters per level l: `wq.{l}.weight`, `wk.{l}.weight` (p_l, D/p_l, H·r_l) and
    `q_norms.{l}.weight`, `k_norms.{l}.weight` (p_l·r_l,).
    """

    wq: tuple[Core, ...]
    wk: tuple[Core, ...]
    q_norms: tuple[LayerNorm, ...] | None
    k_norms: tuple[LayerNorm, ...] | None
    ranks: tuple[int, ...] = eqx.field(static=True)
    level_scales: tuple[float, ...] = eqx.field(static=True)
    d_model: int = eqx.field(static=True)
    n_heads: int = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        ranks: Sequence[int],
        *,
        key: jax.Array,
        level_norm: bool = True,
        mup_logits: bool = False,
        cap: bool = True,
    ):
        if n_heads < 1 or d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        ranks = check_ranks(ranks, d_model // n_heads, "bilinear MLR")
        blocks = [2**level for level in range(len(ranks))]
        if d_model % blocks[-1]:
            raise ValueError(
                f"bilinear MLR with {len(ranks)} levels splits D into {blocks[-1]} chunks, "
                f"but d_model={d_model} is not divisible by {blocks[-1]}; use fewer levels"
            )
        keys = jax.random.split(key, 2 * len(ranks))
        self.wq = tuple(
            Core((p, d_model // p, n_heads * r), d_model // p, n_heads * r, key=k, cap=cap)
            for p, r, k in zip(blocks, ranks, keys[::2])
        )
        self.wk = tuple(
            Core((p, d_model // p, n_heads * r), d_model // p, n_heads * r, key=k, cap=cap)
            for p, r, k in zip(blocks, ranks, keys[1::2])
        )
        widths = [p * r for p, r in zip(blocks, ranks)]
        self.q_norms = tuple(LayerNorm(w) for w in widths) if level_norm else None
        self.k_norms = tuple(LayerNorm(w) for w in widths) if level_norm else None
        self.ranks = ranks
        self.level_scales = bilinear_mlr_scales(ranks, mup_logits)
        self.d_model = d_model
        self.n_heads = n_heads
        self.scale = 1.0  # the per-level scales are folded into the key features

    def _level(self, core: Core, x: jax.Array) -> jax.Array:
        """(T, D) -> (H, T, p_l·r_l): one level's projection, chunk-major."""
        p = core.weight.shape[0]
        chunks = x.reshape(x.shape[0], p, self.d_model // p)  # (T, p, D/p)
        y = jnp.einsum("tpi,pio->tpo", chunks, core.value())  # (T, p, H r)
        y = y.reshape(x.shape[0], p, self.n_heads, -1)  # (T, p, H, r)
        return jnp.transpose(y, (2, 0, 1, 3)).reshape(self.n_heads, x.shape[0], -1)

    def features(self, xq: jax.Array, xk: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(T, D), (S, D) -> q (H, T, Σ r_l p_l), k (H, S, Σ r_l p_l), scale_l folded into k."""
        check_tokens(xq, self.d_model, "query-side tokens")
        check_tokens(xk, self.d_model, "key-side tokens")
        qs, ks = [], []
        for level, (cq, ck, scale) in enumerate(zip(self.wq, self.wk, self.level_scales)):
            q, k = self._level(cq, xq), self._level(ck, xk)
            if self.q_norms is not None and self.k_norms is not None:
                q, k = self.q_norms[level](q), self.k_norms[level](k)
            qs.append(q)
            ks.append(scale * k)
        return jnp.concatenate(qs, axis=-1), jnp.concatenate(ks, axis=-1)

    def matrix(self) -> jax.Array:
        """(H, D, D): Σ_l scale_l ⊕_k L_{l,k} R_{l,k}ᵀ (the level LayerNorms left out)."""
        total = jnp.zeros((self.n_heads, self.d_model, self.d_model), jnp.float32)
        for cq, ck, scale in zip(self.wq, self.wk, self.level_scales):
            p, m, _ = cq.weight.shape
            left = cq.value().reshape(p, m, self.n_heads, -1)  # (p, D/p, H, r)
            right = ck.value().reshape(p, m, self.n_heads, -1)
            blocks = jnp.einsum("pihr,pjhr->hpij", left, right)  # (H, p, D/p, D/p)
            eye = jnp.eye(p, dtype=blocks.dtype)
            full = jnp.einsum("hpij,pq->hpiqj", blocks, eye)  # block diagonal
            total = total + scale * full.reshape(self.n_heads, self.d_model, self.d_model)
        return total
