"""Build scorers, structures and attention layers from names (for configs and the CLI)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from bnn_shift.attention.base import Scorer, Structure
from bnn_shift.attention.bilinear_mlr import BilinearMLRScorer
from bnn_shift.attention.btt import BTTScorer
from bnn_shift.attention.dense import DenseScorer
from bnn_shift.attention.mha import MultiHeadAttention
from bnn_shift.attention.sequence_mlr import SequenceMLR
from bnn_shift.attention.standard import StandardScorer
from bnn_shift.attention.structures import Full, GlobalSlidingWindow, SlidingWindow

SCORERS: dict[str, type[Scorer]] = {
    "standard": StandardScorer,
    "dense": DenseScorer,
    "btt": BTTScorer,
    "bilinear_mlr": BilinearMLRScorer,
}
STRUCTURES: dict[str, type[Structure]] = {
    "full": Full,
    "sliding_window": SlidingWindow,
    "global_sliding_window": GlobalSlidingWindow,
    "mlr": SequenceMLR,
}


def _lookup(table: Mapping[str, type], kind: str, what: str) -> type:
    if kind not in table:
        raise ValueError(f"unknown {what} {kind!r}; choose one of {sorted(table)}")
    return table[kind]


def make_scorer(kind: str, d_model: int, n_heads: int, *, key: jax.Array, **options) -> Scorer:
    """E.g. make_scorer("bilinear_mlr", 256, 8, key=k, ranks=(8, 4, 4, 16))."""
    return _lookup(SCORERS, kind, "scorer")(d_model, n_heads, key=key, **options)


def make_structure(kind: str, **options) -> Structure:
    """E.g. make_structure("mlr", ranks=(32, 8, 6, 4, 4, 4, 4, 2), normalize="count")."""
    return _lookup(STRUCTURES, kind, "structure")(**options)


def make_attention(
    d_model: int,
    n_heads: int,
    *,
    key: jax.Array,
    scorer: str = "standard",
    structure: str = "full",
    scorer_options: Mapping[str, Any] | None = None,
    structure_options: Mapping[str, Any] | None = None,
    d_value: int | None = None,
    use_bias: bool = False,
) -> MultiHeadAttention:
    """A `MultiHeadAttention` from a scorer name and a structure name plus their options."""
    k_scorer, k_layer = jax.random.split(key)
    return MultiHeadAttention(
        make_scorer(scorer, d_model, n_heads, key=k_scorer, **dict(scorer_options or {})),
        make_structure(structure, **dict(structure_options or {})),
        key=k_layer,
        d_value=d_value,
        use_bias=use_bias,
    )
