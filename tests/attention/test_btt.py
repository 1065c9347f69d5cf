"""Tests for bnn_shift.attention.btt: bilinear Block Tensor-Train scoring."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnn_shift.attention.btt import BTTScorer, btt_factors, btt_params_per_head
from bnn_shift.attention.core import rms_cap

from .helpers import (
    check_bilinear,
    check_key_norm,
    matrix_of,
    n_params,
    numerical_rank,
    random_module,
    tokens,
)


def test_factorisation_examples_from_the_paper():
    assert [btt_factors(d) for d in (64, 256, 768, 1024)] == [(4, 16), (8, 32), (24, 32), (16, 64)]
    assert btt_factors(7) == (1, 7)  # a prime has only itself above its square root


@given(d=st.integers(2, 5000))
def test_factorisation_rule(d):
    a, b = btt_factors(d)
    assert a * b == d and b > math.sqrt(d)
    assert not any(d % f == 0 and f > math.sqrt(d) for f in range(1, b))


def test_parameter_counts():
    # s·b·(D + c²) per head; REFERENCE §2.2 at s = 1: 1,280, 10,240, 81,920
    assert [btt_params_per_head(d) for d in (64, 256, 1024)] == [1_280, 10_240, 81_920]
    scorer = eqx.filter_eval_shape(BTTScorer, 64, 3, key=jax.random.key(0), rank=2, key_norm=False)
    assert n_params(scorer) == 3 * btt_params_per_head(64, 2)


def test_matrix_follows_the_index_formula():
    # D = 6 -> (a, b) = (c, d) = (2, 3);
    # M_h[α b + β, γ d + δ] = Σ_σ WQ[(h,β), α, (γ,σ)] · WK[γ, δ, (h,β,σ)]
    h_count, s_count = 2, 2
    scorer = random_module(BTTScorer, 6, h_count, rank=s_count, key_norm=False, cap=False)
    a, b = scorer.factors
    wq, wk = np.asarray(scorer.wq.weight), np.asarray(scorer.wk.weight)
    expected = np.zeros((h_count, 6, 6))
    for h, al, be, ga, de, si in np.ndindex(h_count, a, b, a, b, s_count):
        expected[h, al * b + be, ga * b + de] += (
            wq[h * b + be, al, ga * s_count + si] * wk[ga, de, (h * b + be) * s_count + si]
        )
    np.testing.assert_allclose(scorer.matrix() / scorer.scale, expected, rtol=1e-5, atol=1e-6)


@settings(max_examples=4, deadline=None)
@given(
    d=st.sampled_from([2, 4, 6, 9, 12, 16]),
    heads=st.integers(1, 3),
    rank=st.integers(1, 2),
    t=st.integers(1, 4),
    seed=st.integers(0, 99),
)
def test_scores_are_the_bilinear_form_of_matrix(d, heads, rank, t, seed):
    scorer = random_module(BTTScorer, d, heads, rank=rank, key_norm=False, seed=seed)
    check_bilinear(scorer, t, t + 2, seed)


def test_key_layernorm_acts_on_the_mapped_keys():
    d = 16
    scorer = random_module(BTTScorer, d, 2, seed=2)
    x = tokens((5, d), 3)
    check_key_norm(scorer, x)
    assert scorer.scale == pytest.approx(1 / 4)


@pytest.mark.parametrize("d", [16, 36, 64])
def test_full_rank_at_rank_one(d):
    matrix = matrix_of(random_module(BTTScorer, d, 1, rank=1, seed=d))[0]
    assert numerical_rank(matrix) == d


def test_cores_are_rms_capped():
    scorer = random_module(BTTScorer, 16, 2, key_norm=False)
    assert scorer.factors == (2, 8)
    assert scorer.wk.weight.shape == (2, 8, 16) and scorer.wq.weight.shape == (16, 2, 2)
    loud = jax.tree.map(lambda w: 50 * w, scorer)
    b = loud.factors[1]
    wk = rms_cap(loud.wk.weight, b, 2 * b)
    np.testing.assert_allclose(loud.wk.value(), wk, rtol=1e-6)
    assert float(np.sqrt(np.mean(np.square(wk)))) == pytest.approx(math.sqrt(b) / b, rel=1e-4)
