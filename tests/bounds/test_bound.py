import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnn_shift.bounds.bound import (
    ALPHA,
    DELTA,
    binary_kl,
    catoni_at,
    catoni_bound,
    hyperparameter_bits,
    kl_nats,
    mcallester_bound,
    occam_bound,
    prior_split,
)

LN2 = math.log(2)


def test_reference_check_value_cifar10_layer13s():
    # REFERENCE 3.5: R̂ = 32.16% (16,080 of 50,000 exactly), ℓ_p = 8,260.01 (rounded to 0.005
    # bits, which moves the bound by < 1e-7), b_hyp = -2 as the reference stored it.
    kl = (8260.01 - 2) * LN2
    assert catoni_bound(0.3216, kl, 50_000) == pytest.approx(0.55965061, abs=1e-6)


@pytest.mark.parametrize(
    "error, bits, n, expected, tol",
    [
        (0.1362, 8_490, 50_000, 0.3512, 5e-5),  # ImageNet -> CIFAR-10 (b_hyp 0)
        (0.4589, 22_490, 50_000, 0.8129, 5e-5),  # ImageNet -> CIFAR-100
        (0.35, 2_867_200, 1_281_167, 0.965, 5e-4),  # Zhou et al., ImageNet MobileNet
    ],
)
def test_other_reference_values(error, bits, n, expected, tol):
    assert catoni_bound(error, bits * LN2, n) == pytest.approx(expected, abs=tol)


def test_catoni_at_fixed_lambda_by_hand():
    # R̂ = 0.1, KL = 100 nats, n = 1,000, λ = 500:
    # penalty = 100 + ln 20 + 2 ln(2 + ln 500 / ln 1.0001) = 100 + 2.995732 + 2·ln(62,149.7...)
    g = math.log(500)
    penalty = 100 + math.log(20) + 2 * math.log(2 + g / math.log(1.0001))
    assert penalty == pytest.approx(125.0703, abs=1e-4)
    q = 0.1 + 1.0001 / 500 * penalty
    expected = (1 - math.exp(-0.5 * q)) / (1 - math.exp(-0.5))
    assert float(catoni_at(0.1, 100.0, 1000, g)) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.408196, abs=1e-6)  # 0.160612 / 0.393469


def test_no_grid_high_error_branch_is_not_tighter():
    # REFERENCE 3.5 invariant: the reference's grid-free branch (λ in (1, 100)) >= the grid bound.
    kl, n = 1724.0, 30_000
    g = np.linspace(0.0, math.log(100), 20_001)
    no_grid = float(np.min(catoni_at(0.289, kl, n, g, union=False)))
    assert no_grid >= catoni_bound(0.289, kl, n)


def test_high_error_search_finds_a_non_vacuous_value():
    # REFERENCE 3.5: R̂ = 0.78, KL ≈ 3e5 nats; a stock bracket returns 1.0, a grid finds ≈ 0.964.
    assert catoni_bound(0.78, 3e5, 1_281_167) == pytest.approx(0.964, abs=1e-3)


def test_union_term_costs_something():
    g = np.array([5.0, 6.0, 7.0])  # λ where the bound is below its cap of 1
    with_union = catoni_at(0.1, 50.0, 1000, g)
    assert np.all(with_union < 1) and np.all(
        with_union > catoni_at(0.1, 50.0, 1000, g, union=False)
    )


@settings(max_examples=50, deadline=None)
@given(
    st.floats(0.0, 0.95),
    st.floats(0.001, 0.05),
    st.floats(0.0, 5e4),
    st.integers(100, 10**6),
)
def test_bound_is_monotone_in_train_error(error, step, kl, n):
    lo, hi = catoni_bound(error, kl, n), catoni_bound(min(error + step, 1.0), kl, n)
    assert lo <= hi + 1e-12
    assert lo >= error - 1e-12


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 0.9), st.floats(1.0, 2e4), st.floats(1.0, 5e3), st.integers(100, 10**6))
def test_bound_is_monotone_in_code_length(error, bits, extra, n):
    short = catoni_bound(error, kl_nats(bits), n)
    long = catoni_bound(error, kl_nats(bits + extra), n)
    assert short <= long + 1e-12


def test_occam_inverts_the_binary_kl():
    error, kl, n = 0.05, 2000.0, 60_000
    bound = occam_bound(error, kl, n)
    budget = (kl + math.log(1 / DELTA)) / n
    assert float(binary_kl(error, bound)) == pytest.approx(budget, rel=1e-9)
    # zero train error: kl(0 ‖ p) = -ln(1 - p)
    assert occam_bound(0.0, kl, n) == pytest.approx(1 - math.exp(-budget), rel=1e-9)


def test_mcallester_formula():
    assert mcallester_bound(0.1, 50.0, 1000) == pytest.approx(
        0.1 + math.sqrt((50 + math.log(1000 / 0.05)) / 1999), rel=1e-12
    )


def test_kl_and_hyperparameter_bits():
    assert kl_nats(1000.0, 10.0) == pytest.approx(1010 * LN2)
    assert hyperparameter_bits(1024) == pytest.approx(10.0)
    with pytest.raises(ValueError, match=">= 0 bits"):
        kl_nats(1000.0, -2.0)
    with pytest.raises(ValueError, match=">= 1"):
        hyperparameter_bits(0)


def test_prior_split_is_a_partition():
    prior, rest = prior_split(1000, 0.3, seed=4)
    assert len(prior) == 300 and len(rest) == 700
    assert np.array_equal(np.sort(np.concatenate([prior, rest])), np.arange(1000))
    again, _ = prior_split(1000, 0.3, seed=4)
    assert np.array_equal(prior, again)
    with pytest.raises(ValueError, match="fraction"):
        prior_split(10, 1.0, 0)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="train_error"):
        catoni_bound(1.5, 10.0, 100)
    with pytest.raises(ValueError, match="KL"):
        catoni_bound(0.1, -1.0, 100)
    with pytest.raises(ValueError, match="n must"):
        occam_bound(0.1, 1.0, 0)
    assert ALPHA == 1e-4 and DELTA == 0.05
