"""Tests for bnn_shift.attention.standard: multi-head low-rank scoring."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnn_shift.attention.standard import StandardScorer

from .helpers import check_bilinear, layer_norm, numerical_rank, random_module, tokens


@settings(max_examples=4, deadline=None)
@given(
    heads=st.integers(1, 3),
    head_dim=st.integers(1, 4),
    t=st.integers(1, 5),
    s=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_scores_are_the_bilinear_form_of_matrix(heads, head_dim, t, s, seed):
    scorer = random_module(StandardScorer, heads * head_dim, heads, qk_norm=False, seed=seed)
    check_bilinear(scorer, t, s, seed)


def test_qk_norm_acts_on_each_heads_projections():
    d, heads = 12, 3
    scorer = random_module(StandardScorer, d, heads, seed=1)  # random LayerNorm weights too
    x = tokens((5, d), 2)
    wq = np.asarray(scorer.query.weight, np.float64).reshape(heads, 4, d)
    wk = np.asarray(scorer.key.weight, np.float64).reshape(heads, 4, d)
    q = layer_norm(np.einsum("hrd,td->htr", wq, x), scorer.q_norm.weight)
    k = layer_norm(np.einsum("hrd,td->htr", wk, x), scorer.k_norm.weight)
    expected = scorer.scale * np.einsum("htr,hsr->hts", q, k)
    np.testing.assert_allclose(scorer(x), expected, rtol=1e-4, atol=1e-4)


def test_rank_is_the_head_dim_and_one_head_is_full_rank():
    low = random_module(StandardScorer, 8, 4, qk_norm=False).matrix()
    assert [numerical_rank(m) for m in low] == [2] * 4
    full = random_module(StandardScorer, 8, 1, qk_norm=False).matrix()
    assert numerical_rank(full[0]) == 8


def test_constructor_and_logit_scales():
    scorer = StandardScorer(8, 2, key=jax.random.key(0))
    assert scorer.query.weight.shape == (8, 8) and scorer.scale == pytest.approx(8 / 4)
    sp = random_module(StandardScorer, 64, 4, mup_logits=False)
    assert sp.scale == pytest.approx(1 / math.sqrt(16))
    assert random_module(StandardScorer, 8, 2, head_dim=8).matrix().shape == (2, 8, 8)


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="divisible"):
        random_module(StandardScorer, 10, 3)
    scorer = random_module(StandardScorer, 6, 2)
    with pytest.raises(ValueError, match=r"jax\.vmap"):
        scorer(np.ones((2, 4, 6), np.float32))
