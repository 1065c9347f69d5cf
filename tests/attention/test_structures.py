"""Tests for bnn_shift.attention.structures: full, sliding-window and global+window attention."""

from __future__ import annotations

import numpy as np
import pytest

from bnn_shift.attention.structures import (
    Full,
    GlobalSlidingWindow,
    SlidingWindow,
    window_positions,
)

from .helpers import tokens

H, T, E = 2, 7, 4


def softmax(logits, mask):
    logits = np.where(mask, logits, -np.inf)
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def reference_mask(window, causal):
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    near = np.abs(i - j) <= window
    return near & (j <= i) if causal else near


@pytest.fixture(scope="module")
def qkv():
    return tokens((H, T, E), 0), tokens((H, T, E), 1), tokens((H, T, 3), 2)


@pytest.mark.parametrize("causal", [True, False])
def test_full_is_softmax_attention(qkv, causal):
    q, k, v = (np.asarray(a, np.float64) for a in qkv)
    logits = 0.5 * np.einsum("hte,hse->hts", q, k)
    mask = reference_mask(T, causal)
    expected = np.einsum("hts,hsd->htd", softmax(logits, mask), v)
    np.testing.assert_allclose(Full(causal)(*qkv, 0.5), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("causal", [True, False])
def test_sliding_window_weights_vanish_outside_the_window(qkv, causal):
    q, k, _ = qkv
    weights = np.asarray(SlidingWindow(2, causal).weights(q, k, 0.5))
    mask = reference_mask(2, causal)
    assert np.all(weights[:, ~mask] == 0)
    np.testing.assert_allclose(weights.sum(-1), 1, rtol=1e-6)
    logits = 0.5 * np.einsum("hte,hse->hts", q.astype(np.float64), k)
    np.testing.assert_allclose(weights, softmax(logits, mask), rtol=1e-5, atol=1e-6)
    wide = SlidingWindow(T, causal).weights(q, k, 0.5)  # a window as long as T is Full
    np.testing.assert_allclose(wide, Full(causal).weights(q, k, 0.5), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("causal", [True, False])
def test_global_plus_window_adds_two_separately_normalised_softmaxes(qkv, causal):
    q, k, _ = (np.asarray(a, np.float64) for a in qkv)
    weights = np.asarray(GlobalSlidingWindow(1, 2, causal).weights(*qkv[:2], 0.5))
    glob = 8.0 * np.einsum("hte,hse->hts", q[..., :1], k[..., :1])  # scale 8/g, g = 1
    local = 8 / 3 * np.einsum("hte,hse->hts", q[..., 1:], k[..., 1:])  # 8/(e - g)
    expected = softmax(glob, reference_mask(T, causal)) + softmax(local, reference_mask(2, causal))
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights.sum(-1), 2, rtol=1e-6)
    with pytest.raises(ValueError, match="strictly between"):
        GlobalSlidingWindow(4, 2).weights(*qkv[:2], 1.0)


def test_score_flops_count_the_window_only():
    assert window_positions(5, 1, True) == 9  # 1 + 2 + 2 + 2 + 2
    assert window_positions(5, 1, False) == 13  # 2 + 3 + 3 + 3 + 2
    assert SlidingWindow(512).score_flops(1024, 64) == 2 * 64 * window_positions(1024, 512, True)
    assert Full().score_flops(1024, 64) == 2 * 1024**2 * 64
    gswa = GlobalSlidingWindow(32, 512).score_flops(1024, 64)
    assert gswa == 2 * 1024**2 * 32 + 2 * 32 * window_positions(1024, 512, True)


def test_causal_needs_as_many_queries_as_keys(qkv):
    q, k, _ = qkv
    with pytest.raises(ValueError, match="cross-attention"):
        Full().weights(q, k[:, :3], 1.0)
    assert Full(causal=False).weights(q, k[:, :3], 1.0).shape == (H, T, 3)
