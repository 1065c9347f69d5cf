"""Tests for bnn_shift.attention.sequence_mlr: multi-level low-rank attention over positions."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnn_shift.attention.sequence_mlr import SequenceMLR, hierarchical_attention
from bnn_shift.attention.structures import Full

from .helpers import tokens

LM_RANKS = (32, 8, 6, 4, 4, 4, 4, 2)


def dense_reference(q, k, ranks, sizes, normalize, scales=None):
    """S = Σ_l B_l ⊙ (Q_l K_lᵀ)·scale_l with dense 0/1 block masks B_l, in float64."""
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    t = q.shape[1]
    scales = scales or [1 / r for r in ranks]
    logits, counts, start = 0.0, 0.0, 0
    for rank, size, scale in zip(ranks, sizes, scales):
        block = np.arange(t) // size
        mask = (block[:, None] == block[None, :]).astype(np.float64)
        qk = np.einsum("hte,hse->hts", q[..., start : start + rank], k[..., start : start + rank])
        logits = logits + mask * qk * scale
        counts = counts + mask
        start += rank
    if normalize == "count":
        logits = logits / counts
    elif normalize == "levels":
        logits = logits / len(ranks)
    return logits


def reference_output(logits, v, causal):
    t = logits.shape[-1]
    if causal:
        logits = np.where(np.tril(np.ones((t, t), bool)), logits, -np.inf)
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return np.einsum("hts,hsd->htd", z / z.sum(-1, keepdims=True), np.asarray(v, np.float64))


@settings(max_examples=4, deadline=None)
@given(
    ranks=st.lists(st.integers(1, 2), min_size=1, max_size=3),
    extra=st.integers(1, 2),
    normalize=st.sampled_from(["none", "count", "levels"]),
    causal=st.booleans(),
    seed=st.integers(0, 99),
)
def test_equals_the_dense_masked_reference(ranks, extra, normalize, causal, seed):
    t = 2 ** (len(ranks) - 1) * 2 * extra  # divisible by every level's block count
    e = sum(ranks)
    q, k, v = tokens((2, t, e), seed), tokens((2, t, e), seed + 1), tokens((2, t, 3), seed + 2)
    structure = SequenceMLR(ranks, normalize=normalize, causal=causal)
    sizes = [t // 2**level for level in range(len(ranks))]
    expected = dense_reference(q, k, ranks, sizes, normalize)
    both = jax.jit(lambda q, k, v: (structure(q, k, v, 1.0), structure.logits(q, k)))
    out, logits = both(q, k, v)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, reference_output(expected, v, causal), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_custom_block_sizes_and_level_scales(causal):
    # block sizes 12 -> 4 -> 2 split a block into three sub-blocks at the first level
    ranks, sizes, scales = (2, 1, 1), (12, 4, 2), (0.3, 0.7, 1.1)
    q, k, v = tokens((2, 12, 4), 0), tokens((2, 12, 4), 1), tokens((2, 12, 2), 2)
    structure = SequenceMLR(ranks, block_sizes=sizes, level_scales=scales, causal=causal)
    expected = dense_reference(q, k, ranks, sizes, "none", list(scales))
    expected = reference_output(expected, v, causal)
    out = jax.jit(lambda *a: structure(*a, 1.0))(q, k, v)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_one_level_is_standard_attention():
    q, k, v = tokens((2, 8, 4), 0), tokens((2, 8, 4), 1), tokens((2, 8, 3), 2)
    both = jax.jit(lambda *a: (SequenceMLR((4,))(*a, 123.0), Full()(*a, 1 / 4)))
    np.testing.assert_allclose(*both(q, k, v), rtol=1e-5, atol=1e-6)


def test_hierarchical_attention_with_all_dims_is_standard_attention():
    q, k, v = tokens((2, 16, 4), 3), tokens((2, 16, 4), 4), tokens((2, 16, 3), 5)

    @jax.jit
    def run(q, k, v):
        return [
            (
                hierarchical_attention(
                    0.5 * q, k, v, sizes=(16, 8, 4, 2), dims=(4,) * 4, scales=(1.0,) * 4, causal=c
                ),
                Full(c)(q, k, v, 0.5),
            )
            for c in (True, False)
        ]

    for blocked, full in run(q, k, v):
        np.testing.assert_allclose(blocked, full, rtol=1e-5, atol=1e-6)


def test_causal_weights_and_gradients():
    q, k, v = tokens((1, 8, 4), 6), tokens((1, 8, 4), 7), tokens((1, 8, 2), 8)
    structure = SequenceMLR((2, 1, 1), normalize="count")

    @jax.jit
    def run(q, k, v):
        grads = jax.grad(lambda *a: structure(*a, 1.0).sum(), argnums=(0, 1, 2))(q, k, v)
        dense = jax.grad(lambda q: (structure.weights(q, k, 1.0) @ v).sum())(q)
        return structure.weights(q, k, 1.0), grads, dense

    weights, grads, dense = run(q, k, v)
    assert np.all(np.triu(weights[0], 1) == 0)
    np.testing.assert_allclose(weights.sum(-1), 1, rtol=1e-6)
    assert all(np.all(np.isfinite(g)) for g in grads)
    np.testing.assert_allclose(grads[0], dense, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_no_value_in_the_program_is_t_by_t(causal):
    """Every array the multi-level forward and backward pass forms has <= T²/4 entries
    (the level-1 sibling blocks), where standard attention forms T×T logits."""
    t = 64
    spec = jax.ShapeDtypeStruct((1, t, 12), np.float32)
    values = jax.ShapeDtypeStruct((1, t, 2), np.float32)

    def largest(structure, scale):
        loss = lambda q, k, v: structure(q, k, v, scale).sum()
        jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1, 2)))(spec, spec, values)
        return max(np.prod(var.aval.shape) for eqn in jaxpr.eqns for var in eqn.outvars)

    assert largest(SequenceMLR((2,) * 6, causal=causal), 1.0) == t * t // 4
    assert largest(Full(causal), 0.5) >= t * t


def test_score_flops_and_key_cache_match_the_papers_ratios():
    t = 1024
    lm = SequenceMLR(LM_RANKS)
    # REFERENCE §2.9: Σ_l r_l / 2^(l-1) = 38.45 for the LM ranks, 15.9 for 8 levels of 8
    assert lm.score_flops(t, 64) / (2 * t * t) == pytest.approx(38.453125)
    assert SequenceMLR((8,) * 8).score_flops(t, 64) / (2 * t * t) == pytest.approx(15.9375)
    assert lm.key_cache_sizes(t) == tuple(
        (t // 2**level) * r for level, r in zip(itertools.count(), LM_RANKS)
    )
    assert (sum(lm.key_cache_sizes(t)) + 64 * t) / (128 * t) == pytest.approx(0.8004, abs=1e-4)


def test_configuration_errors():
    q = tokens((1, 12, 4), 0)
    with pytest.raises(ValueError, match="divisible by 8"):
        SequenceMLR((1, 1, 1, 1))(q, q, q, 1.0)
    with pytest.raises(ValueError, match="at least as long as the rank"):
        SequenceMLR((1, 1, 2), block_sizes=(12, 6, 1))(q, q, q, 1.0)
    with pytest.raises(ValueError, match="must equal T=12"):
        SequenceMLR((2, 2), block_sizes=(6, 3))(q, q, q, 1.0)
    with pytest.raises(ValueError, match="divide the previous"):
        SequenceMLR((2, 2), block_sizes=(12, 5))(q, q, q, 1.0)
    with pytest.raises(ValueError, match="sum to 3, but the features have 4"):
        SequenceMLR((2, 1))(q, q, q, 1.0)
    with pytest.raises(ValueError, match="normalize"):
        SequenceMLR((2, 2), normalize="mean")
