"""The two interfaces `MultiHeadAttention` composes: a `Scorer` and a sequence `Structure`.

A **scorer** decides how two tokens are compared. For one sequence it maps query-side tokens
(T, D) and key-side tokens (S, D) to features q (H, T, e) and k (H, S, e) whose inner products,
times the scorer's `scale`, are the attention logits: `scorer(xq, xk)` -> (H, T, S). Every
scorer is a bilinear form x_iᵀ M_h x_j up to its normalisations, and `matrix()` returns M_h
(H, D, D) with the logit scale folded in.

A **structure** decides which positions interact and how the logits become weights: it maps
features q, k, values v (H, S, dv) and the scorer's scale to the mixed values (H, T, dv).
Structures have no parameters.

Both act on ONE sequence; batch with `jax.vmap`.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp


def check_tokens(x: jax.Array, d_model: int, name: str = "tokens") -> None:
    """Raise a clear error unless `x` is one sequence shaped (T, d_model)."""
    if x.ndim != 2 or x.shape[1] != d_model:
        raise ValueError(
            f"{name} must be one sequence shaped (T, {d_model}), got {x.shape}; batch with jax.vmap"
        )


class Scorer(eqx.Module):
    """Maps (query-side tokens (T, D), key-side tokens (S, D)) to logits (H, T, S)."""

    d_model: eqx.AbstractVar[int]
    n_heads: eqx.AbstractVar[int]
    scale: eqx.AbstractVar[float]

    @abc.abstractmethod
    def features(self, xq: jax.Array, xk: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(T, D), (S, D) -> q (H, T, e), k (H, S, e): logits are scale · q kᵀ."""

    @abc.abstractmethod
    def matrix(self) -> jax.Array:
        """(H, D, D): the bilinear form of each head with the logit scale folded in."""

    def __call__(self, xq: jax.Array, xk: jax.Array | None = None) -> jax.Array:
        """(T, D), (S, D) (default: xq) -> logits (H, T, S), before any mask."""
        q, k = self.features(xq, xq if xk is None else xk)
        return self.scale * jnp.einsum("hte,hse->hts", q, k)


class Structure(eqx.Module):
    """Maps features q (H, T, e), k (H, S, e) and values v (H, S, dv) to outputs (H, T, dv).

    Subclasses carry a static `causal` flag: position i then sees only j <= i.
    """

    @abc.abstractmethod
    def weights(self, q: jax.Array, k: jax.Array, scale: float) -> jax.Array:
        """(H, T, S) attention weights (each softmax row sums to 1)."""

    @abc.abstractmethod
    def score_flops(self, seq_len: int, dim: int) -> int:
        """Multiply-adds x 2 spent forming the logits of one head on a length-T sequence."""

    def __call__(self, q: jax.Array, k: jax.Array, v: jax.Array, scale: float) -> jax.Array:
        """-> (H, T, dv): the weights applied to the values."""
        return jnp.einsum("hts,hsd->htd", self.weights(q, k, scale), v)
