"""Tests for bnn_shift.attention.bilinear_mlr: multi-level block-low-rank scoring."""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnn_shift.attention.bilinear_mlr import BilinearMLRScorer
from bnn_shift.attention.standard import StandardScorer

from .helpers import (
    check_bilinear,
    layer_norm,
    matrix_of,
    n_params,
    numerical_rank,
    random_module,
    tokens,
)


def test_same_parameter_count_as_standard_attention():
    # 2·D·r per head (REFERENCE §2.3): the ICL configuration D = 256, H = 8, ranks 8|4|4|16
    key = jax.random.key(0)
    mlr = eqx.filter_eval_shape(BilinearMLRScorer, 256, 8, (8, 4, 4, 16), key=key, level_norm=False)
    standard = eqx.filter_eval_shape(StandardScorer, 256, 8, key=key, qk_norm=False)
    assert n_params(mlr) == n_params(standard) == 2 * 256 * 32 * 8


@settings(max_examples=4, deadline=None)
@given(
    copies=st.integers(1, 2),
    ranks=st.lists(st.integers(1, 2), min_size=1, max_size=3),
    t=st.integers(1, 4),
    seed=st.integers(0, 99),
)
def test_scores_are_the_bilinear_form_of_matrix(copies, ranks, t, seed):
    heads = copies * 2 ** (len(ranks) - 1)  # so that D is divisible by every level's chunk count
    d = heads * sum(ranks)
    scorer = random_module(BilinearMLRScorer, d, heads, tuple(ranks), level_norm=False, seed=seed)
    check_bilinear(scorer, t, t + 1, seed)


def test_level_layernorms_and_scales():
    """Σ_l scale_l ⟨LN(q_l), LN(k_l)⟩, with q_l the chunk-wise projections of level l."""
    d, heads, ranks = 8, 2, (2, 1, 1)
    scorer = random_module(BilinearMLRScorer, d, heads, ranks, seed=5)  # LN weights random too
    x = tokens((3, d), 6)
    expected = 0.0
    for level, r in enumerate(ranks):
        p = 2**level
        chunks = x.reshape(3, p, d // p)
        wq = np.asarray(scorer.wq[level].value(), np.float64).reshape(p, d // p, heads, r)
        wk = np.asarray(scorer.wk[level].value(), np.float64).reshape(p, d // p, heads, r)
        q = np.einsum("tpi,pihr->htpr", chunks, wq).reshape(heads, 3, p * r)
        k = np.einsum("tpi,pihr->htpr", chunks, wk).reshape(heads, 3, p * r)
        q = layer_norm(q, scorer.q_norms[level].weight)
        k = layer_norm(k, scorer.k_norms[level].weight)
        expected = expected + np.einsum("hte,hse->hts", q, k) / np.sqrt(p * r)
    np.testing.assert_allclose(eqx.filter_jit(scorer)(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("ranks", "rank"), [((1, 1, 1, 1), 15), ((2, 2), 6), ((4,), 4)])
def test_rank_is_min_of_d_and_sum_of_level_widths(ranks, rank):
    # D = 16, H = 4 (r = 4): rank = min(D, Σ_l r_l 2^(l-1))
    m = matrix_of(random_module(BilinearMLRScorer, 16, 4, ranks, level_norm=False))[0]
    assert numerical_rank(m) == rank


def test_configuration_errors():
    with pytest.raises(ValueError, match="sum to 3, but must sum to 4"):
        random_module(BilinearMLRScorer, 16, 4, (2, 1))
    with pytest.raises(ValueError, match="not divisible by 8"):
        random_module(BilinearMLRScorer, 12, 1, (3, 3, 3, 3))
