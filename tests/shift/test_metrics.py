"""Tests for bnn_shift.shift.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import brier_score_loss, log_loss

from bnn_shift.shift.metrics import (
    DEFAULT_METRICS,
    DRAW_METRICS,
    METRICS,
    PROB_FLOOR,
    accuracy,
    brier,
    ece,
    mce,
    mean_entropy,
    mean_mutual_information,
    nll,
)

# Four examples, three classes. argmax = 0, 1, 2, 0 (the last row ties 0 and 1 -> 0).
PROBS = np.array(
    [
        [0.70, 0.20, 0.10],
        [0.10, 0.60, 0.30],
        [0.25, 0.25, 0.50],
        [0.40, 0.40, 0.20],
    ]
)
LABELS = np.array([0, 2, 2, 1])  # correct, wrong, correct, wrong


def test_hand_computed_values():
    assert accuracy(PROBS, LABELS) == pytest.approx(0.5)
    assert nll(PROBS, LABELS) == pytest.approx(
        -(math.log(0.7) + math.log(0.3) + math.log(0.5) + math.log(0.4)) / 4
    )
    # Squared errors per row: 0.14, 0.86, 0.375, 0.56.
    assert brier(PROBS, LABELS) == pytest.approx((0.14 + 0.86 + 0.375 + 0.56) / 4)
    # One bin: |mean confidence - accuracy| = |0.55 - 0.5|.
    assert ece(PROBS, LABELS, n_bins=1) == pytest.approx(0.05)


def test_ece_equal_mass_and_equal_width_differ():
    # Confidences 0.7, 0.6, 0.5, 0.4 with correctness T, F, T, F.
    # Equal mass, 2 bins: {0.4 F, 0.5 T} gap |0.45 - 0.5| = 0.05; {0.6 F, 0.7 T} gap 0.15.
    assert ece(PROBS, LABELS, n_bins=2, binning="equal_mass") == pytest.approx(0.1)
    # Equal width, 2 bins: [0, 0.5) = {0.4 F} gap 0.4 (weight 1/4);
    # [0.5, 1] = {0.5 T, 0.6 F, 0.7 T} gap |0.6 - 2/3| (weight 3/4).
    expected = 0.25 * 0.4 + 0.75 * abs(0.6 - 2 / 3)
    assert ece(PROBS, LABELS, n_bins=2, binning="equal_width") == pytest.approx(expected)


def test_ece_more_bins_than_examples_and_confidence_one():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert ece(probs, np.array([0, 1]), n_bins=20) == pytest.approx(0.0)
    assert ece(probs, np.array([1, 1]), n_bins=20, binning="equal_width") == pytest.approx(0.5)
    assert ece(probs, np.array([1, 1]), n_bins=20, binning="equal_mass") == pytest.approx(0.5)


def test_ece_equal_mass_ties_share_a_bin_and_order_does_not_matter():
    # 40 identical confidences (0.7), 10 correct: one bin, ECE = |0.7 - 0.25|.
    probs = np.tile([0.7, 0.2, 0.1], (40, 1))
    labels = np.array([0] * 10 + [1] * 30)
    assert ece(probs, labels) == pytest.approx(0.45)
    assert ece(probs, labels[::-1]) == pytest.approx(0.45)


def test_nll_floor():
    assert nll(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-math.log(PROB_FLOOR))


def test_per_draw_probs_are_averaged_before_scoring():
    draws = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.3, 0.7], [0.4, 0.6]]])  # (2, 2, 2)
    labels = np.array([0, 1])
    bma = draws.mean(axis=0)
    for name, fn in METRICS.items():
        assert fn(draws, labels) == pytest.approx(fn(bma, labels)), name


def test_returns_python_floats_and_accepts_float32_and_jax():
    import jax.numpy as jnp

    for fn in METRICS.values():
        assert type(fn(PROBS.astype(np.float32), LABELS)) is float
        assert fn(jnp.asarray(PROBS, jnp.float32), jnp.asarray(LABELS)) == pytest.approx(
            fn(PROBS, LABELS), rel=1e-6
        )


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        (PROBS, LABELS[:3], "4 examples but labels has 3"),
        (PROBS, np.array([0, 1, 2, 3]), r"labels must lie in \[0, 3\)"),
        (PROBS, np.array([0, 1, 2, -1]), r"labels must lie in \[0, 3\)"),
        (PROBS, LABELS.astype(float), "labels must be integers"),
        (PROBS, LABELS[:, None], "labels must have shape"),
        (PROBS[0], LABELS[:1], "probs must have shape"),
        (np.zeros((0, 3)), np.zeros(0, int), "non-empty"),
        (np.where(PROBS == 0.7, np.nan, PROBS), LABELS, "non-finite"),
        (PROBS * 1.01, LABELS, "sum to 1 within"),
        (np.array([[1.2, -0.2]]), np.array([0]), "negative"),
    ],
)
def test_validation(probs, labels, match):
    for fn in METRICS.values():
        with pytest.raises(ValueError, match=match):
            fn(probs, labels)


def test_ece_argument_validation():
    with pytest.raises(ValueError, match="binning"):
        ece(PROBS, LABELS, binning="quantile")
    with pytest.raises(ValueError, match="n_bins"):
        ece(PROBS, LABELS, n_bins=0)


def test_perfectly_calibrated_predictor_has_small_ece():
    rng = np.random.default_rng(0)
    n, k, n_bins = 20_000, 5, 20
    probs = rng.dirichlet(np.full(k, 0.5), size=n)  # (n, k)
    labels = np.array([rng.choice(k, p=p) for p in probs])  # y ~ Categorical(p): calibrated
    value = ece(probs, labels, n_bins=n_bins)

    # Tolerance from the binomial standard error. The bins depend only on the
    # confidences c_i = max_j p_ij, not on the labels, and P(argmax correct) = c_i.
    # So in a bin of m points the gap (acc - mean conf) has mean 0 and standard error
    # s_b = sqrt(sum_i c_i (1 - c_i)) / m, and is close to N(0, s_b^2) for m ~ 1000.
    # Then ECE = sum_b w_b |gap_b| with w_b = m / n has mean sum_b w_b s_b sqrt(2/pi)
    # and variance sum_b w_b^2 s_b^2 (1 - 2/pi); allow mean + 5 standard deviations.
    conf = np.sort(probs.max(axis=1))
    bins = np.array_split(conf, n_bins)
    w = np.array([b.size / n for b in bins])
    s = np.array([np.sqrt(np.sum(b * (1 - b))) / b.size for b in bins])
    mean = np.sum(w * s) * np.sqrt(2 / np.pi)
    sd = np.sqrt(np.sum(w**2 * s**2) * (1 - 2 / np.pi))
    tol = mean + 5 * sd
    assert value < tol, (value, tol)
    # The same data scored with sharpened (overconfident) probabilities fails the bound,
    # so the test has power.
    sharp = probs**3 / np.sum(probs**3, axis=1, keepdims=True)
    assert ece(sharp, labels, n_bins=n_bins) > 3 * tol
    assert ece(probs, labels, n_bins=n_bins, binning="equal_width") < 2 * tol


def test_brier_matches_sklearn():
    rng = np.random.default_rng(1)
    p1 = rng.uniform(size=200)
    y = (rng.uniform(size=200) < p1).astype(int)
    probs = np.stack([1 - p1, p1], axis=1)
    # Our Brier sums over both classes: twice the binary score mean((p1 - y)^2).
    assert brier(probs, y) == pytest.approx(2 * brier_score_loss(y, p1))

    pk = rng.dirichlet(np.ones(4), size=300)
    yk = rng.integers(0, 4, size=300)
    assert brier(pk, yk) == pytest.approx(
        brier_score_loss(yk, pk, labels=[0, 1, 2, 3], scale_by_half=False)
    )


def test_nll_matches_sklearn():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(6), size=500)
    labels = rng.integers(0, 6, size=500)
    assert nll(probs, labels) == pytest.approx(log_loss(labels, probs, labels=range(6)))


@st.composite
def probs_and_labels(draw):
    n = draw(st.integers(1, 40))
    k = draw(st.integers(1, 6))
    raw = draw(hnp.arrays(np.float64, (n, k), elements=st.floats(0.0, 1.0, allow_subnormal=False)))
    raw[raw.sum(axis=1) == 0] = 1.0
    probs = raw / raw.sum(axis=1, keepdims=True)
    labels = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    return probs, labels


@settings(max_examples=100, deadline=None)
@given(data=probs_and_labels(), n_bins=st.integers(1, 30))
def test_metric_ranges(data, n_bins):
    probs, labels = data
    assert 0.0 <= accuracy(probs, labels) <= 1.0
    assert nll(probs, labels) >= 0.0
    assert 0.0 <= brier(probs, labels) <= 2.0 + 1e-12
    perm = np.random.default_rng(n_bins).permutation(labels.shape[0])
    for binning in ("equal_mass", "equal_width"):
        value = ece(probs, labels, n_bins=n_bins, binning=binning)
        assert 0.0 <= value <= 1.0 + 1e-12
        # ECE does not depend on the order of the examples.
        permuted = ece(probs[perm], labels[perm], n_bins=n_bins, binning=binning)
        assert permuted == pytest.approx(value, abs=1e-12)


def test_registry():
    assert DEFAULT_METRICS == ("accuracy", "nll", "ece", "brier")
    assert set(DEFAULT_METRICS) <= set(METRICS)
    assert METRICS["ece_equal_width"](PROBS, LABELS) == pytest.approx(
        ece(PROBS, LABELS, binning="equal_width")
    )
    assert METRICS["mce"](PROBS, LABELS) == mce(PROBS, LABELS)
    assert set(DRAW_METRICS) == {"mutual_info"}


def test_mean_entropy_and_mutual_information():
    # Row entropies of PROBS, by hand.
    h = [-sum(q * math.log(q) for q in row) for row in PROBS]
    assert mean_entropy(PROBS, LABELS) == pytest.approx(np.mean(h))
    assert mean_entropy(PROBS) == pytest.approx(np.mean(h))
    draws = np.stack([PROBS, PROBS])
    assert mean_mutual_information(draws) == pytest.approx(0.0, abs=1e-15)
    onehots = np.stack([np.eye(3)[[0, 1]], np.eye(3)[[1, 0]]])  # (2, 2, 3): MI log 2 each
    assert mean_mutual_information(onehots) == pytest.approx(math.log(2))
    assert DRAW_METRICS["mutual_info"](onehots) == pytest.approx(math.log(2))
