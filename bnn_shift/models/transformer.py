"""The transformer trunk the attention models share, and its compute accounting.

`Transformer` is a stack of pre-LN `TransformerBlock`s (bnn_shift.attention) with a final
LayerNorm, acting on one sequence (T, D). Every block's attention is built from a scorer name
(how tokens compare: "standard", "dense", "btt", "bilinear_mlr") and a structure name (which
positions interact: "full", "sliding_window", "global_sliding_window", "mlr") plus their
options, so one model class covers every variant of Kuang et al. (2025).

`forward_flops_per_token` is the compute axis of REFERENCE §2.9: non-embedding forward FLOPs
per token. Every weight matrix of the trunk (dense or structured core) is used once per token,
so it costs 2 FLOPs per entry; the attention logits and the weighted sum of values cost what
each structure's `score_flops` says (a masked dense product is not credited for the causal
mask; a sliding window counts the window only, as the paper counts it).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from bnn_shift.attention import (
    LayerNorm,
    MultiHeadAttention,
    SlidingWindow,
    TransformerBlock,
    make_attention,
)
from bnn_shift.attention.structures import window_positions


class Transformer(eqx.Module):
    """`depth` pre-LN blocks and a final LayerNorm: one sequence (T, D) -> (T, D).

    attention: keyword arguments of `bnn_shift.attention.make_attention` for every block:
    scorer / structure names with their options (e.g. scorer="bilinear_mlr",
    scorer_options={"ranks": (2, 1, 1, 4)}; structure="sliding_window",
    structure_options={"window": 64}), d_value, use_bias. causal is passed to the structure.
    Parameters: `blocks.{i}.norm1.weight`, `blocks.{i}.attention.scorer.*`,
    `blocks.{i}.attention.value.weight`, `blocks.{i}.attention.out_proj.weight`,
    `blocks.{i}.norm2.weight`, `blocks.{i}.mlp.fc.weight`, `blocks.{i}.mlp.out_proj.weight`,
    `norm.weight`.
    """

    blocks: tuple[TransformerBlock, ...]
    norm: LayerNorm
    d_model: int = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        depth: int,
        n_heads: int,
        *,
        key: jax.Array,
        causal: bool = True,
        mlp_ratio: int = 4,
        **attention: Any,
    ):
        if depth < 1:
            raise ValueError(f"a transformer needs depth >= 1, got {depth}")
        structure_options = dict(attention.pop("structure_options", None) or {})
        given = structure_options.pop("causal", causal)
        if given != causal:
            raise ValueError(
                f"structure_options has causal={given} but the model needs causal={causal}; "
                "leave causal out of structure_options"
            )
        structure_options["causal"] = causal
        blocks = []
        for k in jax.random.split(key, depth):
            k_attention, k_block = jax.random.split(k)
            layer = make_attention(
                d_model, n_heads, key=k_attention, structure_options=structure_options, **attention
            )
            blocks.append(TransformerBlock(layer, key=k_block, mlp_ratio=mlp_ratio))
        self.blocks = tuple(blocks)
        self.norm = LayerNorm(d_model)
        self.d_model = d_model

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(T, D) -> (T, D)."""
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def matrix_params(module: Any) -> int:
    """Entries of the weight matrices and cores of `module` (arrays with >= 2 dims)."""
    leaves = jax.tree.leaves(eqx.filter(module, eqx.is_inexact_array))
    return sum(leaf.size for leaf in leaves if leaf.ndim >= 2)


def feature_dim(attention: MultiHeadAttention, seq_len: int) -> int:
    """The per-head feature dim e of the scorer (logits are q·k over e dims)."""
    tokens = jax.ShapeDtypeStruct((seq_len, attention.d_model), jnp.float32)
    q, _ = eqx.filter_eval_shape(attention.scorer.features, tokens, tokens)
    return int(q.shape[-1])


def value_flops(attention: MultiHeadAttention, seq_len: int) -> int:
    """FLOPs of one head's weighted sum of values on a length-T sequence."""
    structure, dv = attention.structure, attention.d_value
    if isinstance(structure, SlidingWindow):
        return 2 * dv * window_positions(seq_len, structure.window, structure.causal)
    return 2 * seq_len * seq_len * dv  # global + window weights are added, then one A·V


def attention_flops(attention: MultiHeadAttention, seq_len: int) -> int:
    """Logits plus A·V FLOPs of all heads of one layer on one length-T sequence."""
    score = attention.structure.score_flops(seq_len, feature_dim(attention, seq_len))
    return attention.n_heads * (score + value_flops(attention, seq_len))


def forward_flops_per_token(transformer: Transformer, seq_len: int) -> float:
    """Non-embedding forward FLOPs per token of the trunk on sequences of length T."""
    total = 2.0 * matrix_params(transformer.blocks)
    for block in transformer.blocks:
        total += attention_flops(block.attention, seq_len) / seq_len
    return total
