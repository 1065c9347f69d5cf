"""Sequence structures: which positions interact, and how logits become attention weights.

- `Full`: every pair (or every earlier-or-same position when causal), one softmax.
- `SlidingWindow`: position i sees j with i - w <= j <= i (causal) or |i - j| <= w.
- `GlobalSlidingWindow`: the feature dims split g | e - g; a global softmax on the first part
  and a sliding-window softmax on the second, normalised separately and added (rows sum to 2).
- `SequenceMLR` (REFERENCE §2.4): multi-level low rank over positions, in its own module.

All take features q (H, T, e), k (H, T, e) from a scorer and values v (H, T, dv). The window
baselines build a masked dense T×T (as the reference trains them); `score_flops` counts the
window only, as the paper's compute axis does.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from bnn_shift.attention.base import Structure


def causal_mask(seq_len: int) -> jax.Array:
    """(T, T) bool: j <= i."""
    return jnp.tril(jnp.ones((seq_len, seq_len), bool))


def window_mask(seq_len: int, window: int, causal: bool) -> jax.Array:
    """(T, T) bool: i - w <= j <= i when causal, |i - j| <= w otherwise."""
    i = jnp.arange(seq_len)[:, None]
    j = jnp.arange(seq_len)[None, :]
    near = jnp.abs(i - j) <= window
    return near & (j <= i) if causal else near


def masked_softmax(logits: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Softmax over the last axis of (H, T, S) logits, masked entries getting weight 0."""
    if mask is not None:
        logits = jnp.where(mask, logits, -jnp.inf)
    return jax.nn.softmax(logits, axis=-1)


def check_features(q: jax.Array, k: jax.Array, causal: bool) -> None:
    if q.ndim != 3 or k.ndim != 3 or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(
            f"features must be q (H, T, e) and k (H, S, e) with matching H and e, "
            f"got {q.shape} and {k.shape}"
        )
    if causal and q.shape[1] != k.shape[1]:
        raise ValueError(
            f"a causal structure needs as many queries as keys, got T={q.shape[1]} and "
            f"S={k.shape[1]}; use causal=False for cross-attention"
        )


def window_positions(seq_len: int, window: int, causal: bool) -> int:
    """Number of (i, j) pairs inside the window."""
    total = 0
    for i in range(seq_len):
        lo, hi = max(0, i - window), i if causal else min(seq_len - 1, i + window)
        total += hi - lo + 1
    return total


class Full(Structure):
    """Standard softmax attention over all positions (earlier-or-same ones when causal)."""

    causal: bool = eqx.field(static=True, default=True)

    def weights(self, q: jax.Array, k: jax.Array, scale: float) -> jax.Array:
        """(H, T, e), (H, S, e) -> (H, T, S)."""
        check_features(q, k, self.causal)
        logits = scale * jnp.einsum("hte,hse->hts", q, k)
        return masked_softmax(logits, causal_mask(q.shape[1]) if self.causal else None)

    def score_flops(self, seq_len: int, dim: int) -> int:
        return 2 * seq_len * seq_len * dim


class SlidingWindow(Structure):
    """Sliding-window attention: i attends to j in [i - window, i] (or |i - j| <= window)."""

    window: int = eqx.field(static=True)
    causal: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if self.window < 0:
            raise ValueError(f"window must be >= 0, got {self.window}")

    def weights(self, q: jax.Array, k: jax.Array, scale: float) -> jax.Array:
        check_features(q, k, True)
        logits = scale * jnp.einsum("hte,hse->hts", q, k)
        return masked_softmax(logits, window_mask(q.shape[1], self.window, self.causal))

    def score_flops(self, seq_len: int, dim: int) -> int:
        return 2 * dim * window_positions(seq_len, self.window, self.causal)


class GlobalSlidingWindow(Structure):
    """Global + sliding window (GSWA): dims [0, g) global, [g, e) windowed, softmaxes added.

    scales: the logit scale of each part; default 8/g and 8/(e - g) (the reference's 8/32 at
    a 32|32 split), so the scorer's own scale is not used.
    """

    global_dims: int = eqx.field(static=True)
    window: int = eqx.field(static=True)
    causal: bool = eqx.field(static=True, default=True)
    scales: tuple[float, float] | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if self.global_dims < 1 or self.window < 0:
            raise ValueError(
                f"need global_dims >= 1 and window >= 0, got {self.global_dims}, {self.window}"
            )

    def weights(self, q: jax.Array, k: jax.Array, scale: float) -> jax.Array:
        """(H, T, S) = global softmax + window softmax (rows sum to 2)."""
        check_features(q, k, True)
        g, e = self.global_dims, q.shape[-1]
        if not 0 < g < e:
            raise ValueError(f"global_dims={g} must lie strictly between 0 and the {e} dims")
        s_global, s_local = self.scales if self.scales is not None else (8.0 / g, 8.0 / (e - g))
        t = q.shape[1]
        glob = s_global * jnp.einsum("hte,hse->hts", q[..., :g], k[..., :g])
        local = s_local * jnp.einsum("hte,hse->hts", q[..., g:], k[..., g:])
        return masked_softmax(glob, causal_mask(t) if self.causal else None) + masked_softmax(
            local, window_mask(t, self.window, self.causal)
        )

    def score_flops(self, seq_len: int, dim: int) -> int:
        g = self.global_dims
        return 2 * seq_len * seq_len * g + 2 * (dim - g) * window_positions(
            seq_len, self.window, self.causal
        )
