"""Structured softmax attention (Kuang et al. 2025) as equinox modules.

Every module acts on ONE sequence, tokens (T, D) -> (T, D) (scorers: -> logits (H, T, S)), so
the engines in `bnn_shift.inference` `vmap` them over examples like any other model.

Scorers (how two tokens compare; `scorer(xq, xk)` -> (H, T, S), `features`, `matrix()` -> the
bilinear form (H, D, D) with the logit scale folded in):
    StandardScorer(d_model, n_heads, *, key, head_dim=None, qk_norm=True, mup_logits=True)
    DenseScorer(d_model, n_heads=1, *, key, key_norm=True, mup_logits=False, cap=False)
    BTTScorer(d_model, n_heads, *, key, rank=1, key_norm=True, input_norm=False, ...)
    BilinearMLRScorer(d_model, n_heads, ranks, *, key, level_norm=True, mup_logits=False)
Structures (which positions interact; `structure(q, k, v, scale)` -> (H, T, dv), `weights`):
    Full(causal=True), SlidingWindow(window, causal=True),
    GlobalSlidingWindow(global_dims, window, causal=True, scales=None),
    SequenceMLR(ranks, block_sizes=None, normalize="none", causal=True, level_scales=None)
    hierarchical_attention(q, k, v, *, sizes, dims, scales, causal): the region-by-region
    softmax SequenceMLR runs on (all dims = e: standard attention with causal block skipping)
Layers:
    MultiHeadAttention(scorer, structure=Full(), *, key, d_value=None, use_bias=False)
    TransformerBlock(attention, *, key, mlp_ratio=4, use_bias=False)   (pre-LN)
    make_attention(d_model, n_heads, *, key, scorer="standard", structure="full", ...)
muP (REFERENCE §2.7): tensor_rules, mup_init, lr_multipliers, scale_by_tensor_lr, mup_adamw.
"""

from bnn_shift.attention.base import Scorer, Structure
from bnn_shift.attention.bilinear_mlr import BilinearMLRScorer
from bnn_shift.attention.block import FeedForward, TransformerBlock
from bnn_shift.attention.btt import BTTScorer, btt_factors, btt_params_per_head
from bnn_shift.attention.core import Core, rms_cap
from bnn_shift.attention.dense import DenseScorer
from bnn_shift.attention.factory import (
    SCORERS,
    STRUCTURES,
    make_attention,
    make_scorer,
    make_structure,
)
from bnn_shift.attention.mha import MultiHeadAttention
from bnn_shift.attention.mup import (
    TensorRule,
    lr_multipliers,
    mup_adamw,
    mup_init,
    scale_by_tensor_lr,
    tensor_rules,
    weight_decay_mask,
)
from bnn_shift.attention.norm import LayerNorm
from bnn_shift.attention.sequence_mlr import SequenceMLR, hierarchical_attention, nest_levels
from bnn_shift.attention.standard import StandardScorer
from bnn_shift.attention.structures import Full, GlobalSlidingWindow, SlidingWindow

__all__ = [
    "SCORERS",
    "STRUCTURES",
    "BTTScorer",
    "BilinearMLRScorer",
    "Core",
    "DenseScorer",
    "FeedForward",
    "Full",
    "GlobalSlidingWindow",
    "LayerNorm",
    "MultiHeadAttention",
    "Scorer",
    "SequenceMLR",
    "SlidingWindow",
    "StandardScorer",
    "Structure",
    "TensorRule",
    "TransformerBlock",
    "btt_factors",
    "btt_params_per_head",
    "hierarchical_attention",
    "lr_multipliers",
    "make_attention",
    "make_scorer",
    "make_structure",
    "mup_adamw",
    "mup_init",
    "nest_levels",
    "rms_cap",
    "scale_by_tensor_lr",
    "tensor_rules",
    "weight_decay_mask",
]
