"""Tests for bnn_shift.attention.dense: full-rank bilinear scoring."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bnn_shift.attention.dense import DenseScorer

from .helpers import check_bilinear, check_key_norm, numerical_rank, random_module, tokens


@settings(max_examples=4, deadline=None)
@given(d=st.integers(1, 8), heads=st.integers(1, 3), t=st.integers(1, 4), seed=st.integers(0, 99))
def test_scores_are_the_bilinear_form_of_matrix(d, heads, t, seed):
    check_bilinear(random_module(DenseScorer, d, heads, key_norm=False, seed=seed), t, t + 1, seed)


def test_key_norm_normalises_the_mapped_keys_and_matrix_is_full_rank():
    d = 6
    scorer = random_module(DenseScorer, d, 2, seed=3)
    x = tokens((4, d), 4)
    m = check_key_norm(scorer, x)
    assert numerical_rank(m[0]) == d
