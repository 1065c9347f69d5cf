import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnn_shift.bounds.coding import (
    arithmetic_decode,
    arithmetic_encode,
    code_length,
    empirical_entropy_bits,
    symbol_counts,
)

# The coder's output is the shortest binary fraction inside its final interval, whose width is
# Π p(s) = 2^-(d·Ĥ) up to the integer rounding of each step: so d·Ĥ <= bits <= d·Ĥ + 2 (+ a
# rounding loss of ~d·total/2^30 bits at 32-bit precision, far below 0.01 here).
SLACK = 2


def _round_trip(symbols: np.ndarray, n_levels: int) -> np.ndarray:
    counts = symbol_counts(symbols, n_levels)
    bits = arithmetic_encode(symbols, counts)
    decoded = arithmetic_decode(bits, counts, len(symbols))
    np.testing.assert_array_equal(decoded, symbols)
    ideal = empirical_entropy_bits(counts)
    assert ideal - 1e-6 <= bits.size <= ideal + SLACK + 0.01
    assert abs(bits.size - (math.ceil(ideal) + 1)) <= SLACK
    return bits


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 12).flatmap(
        lambda k: st.tuples(st.just(k), st.lists(st.integers(0, k - 1), min_size=1, max_size=400))
    )
)
def test_round_trip_uniform_streams(case):
    n_levels, symbols = case
    _round_trip(np.asarray(symbols), n_levels)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 8),
    st.floats(0.8, 0.999),
    st.integers(1, 3000),
    st.integers(0, 2**31 - 1),
)
def test_round_trip_skewed_streams(n_levels, p_top, d, seed):
    rng = np.random.default_rng(seed)
    p = np.full(n_levels, (1 - p_top) / (n_levels - 1))
    p[rng.integers(n_levels)] = p_top
    _round_trip(rng.choice(n_levels, size=d, p=p), n_levels)


def test_long_middle_runs_exercise_the_underflow_path():
    # Two nearly equal symbols keep the interval straddling the midpoint (the E3 case), so bits
    # stay pending for long stretches before a settled bit releases them.
    rng = np.random.default_rng(0)
    symbols = rng.choice(3, size=5000, p=[0.499, 0.002, 0.499])
    bits = _round_trip(symbols, 3)
    assert bits.size > 4000


def test_empty_and_constant_streams():
    assert arithmetic_encode(np.zeros(0, np.int64), np.array([1])).size == 0
    assert arithmetic_decode(np.zeros(0, np.uint8), np.array([0, 3]), 0).size == 0
    const = np.full(1000, 2)
    bits = _round_trip(const, 4)
    assert bits.size <= SLACK


def test_code_length_counts_every_part():
    rng = np.random.default_rng(1)
    symbols = rng.choice(7, size=1000, p=[0.02, 0.08, 0.2, 0.4, 0.2, 0.08, 0.02])
    c = code_length(symbols, 7, bits_per_level=16)
    assert c.codebook_bits == 7 * 16
    assert c.count_bits == 7 * math.ceil(math.log2(1001))
    assert c.entropy_bits == math.ceil(empirical_entropy_bits(symbol_counts(symbols, 7))) + 1
    assert abs(c.payload_bits - c.entropy_bits) <= SLACK
    assert c.message_bits == c.payload_bits + c.codebook_bits + c.count_bits
    ell = c.message_bits
    assert c.prefix_free_bits == pytest.approx(ell + 2 * math.log2(ell), abs=1e-9)


def test_entropy_of_a_known_histogram():
    # counts 2, 1, 1: Ĥ = 1.5 bits per symbol.
    assert empirical_entropy_bits(np.array([2, 1, 1])) == pytest.approx(6.0)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="count 0"):
        arithmetic_encode(np.array([0, 1]), np.array([2, 0]))
    with pytest.raises(ValueError, match="raise `precision`"):
        arithmetic_encode(np.array([0]), np.array([2**30]))
    with pytest.raises(ValueError, match="symbols must lie"):
        symbol_counts(np.array([0, 5]), 3)
