"""Tests for bnn_shift.shift.calibration: bins, reliability data, ECE, MCE."""

from __future__ import annotations

import numpy as np
import pytest

from bnn_shift.shift.calibration import (
    bin_indices,
    ece,
    mce,
    reliability_bins,
    reliability_from_confidence,
)

# Four examples, confidences 0.7, 0.6, 0.5, 0.4; argmax correct, wrong, correct, wrong.
PROBS = np.array(
    [
        [0.70, 0.20, 0.10],
        [0.10, 0.60, 0.30],
        [0.25, 0.25, 0.50],
        [0.40, 0.40, 0.20],
    ]
)
LABELS = np.array([0, 2, 2, 1])


def test_four_point_example_equal_mass_by_hand():
    # Ranks 3, 2, 1, 0 -> bins floor(r * 2 / 4) = 1, 1, 0, 0.
    # Bin 0 = {0.4 wrong, 0.5 right}: confidence 0.45, accuracy 0.5, gap 0.05.
    # Bin 1 = {0.6 wrong, 0.7 right}: confidence 0.65, accuracy 0.5, gap 0.15.
    b = reliability_bins(PROBS, LABELS, n_bins=2, binning="equal_mass")
    np.testing.assert_allclose(b.confidence, [0.45, 0.65])
    np.testing.assert_allclose(b.accuracy, [0.5, 0.5])
    np.testing.assert_array_equal(b.count, [2, 2])
    np.testing.assert_allclose(b.lower, [0.4, 0.6])
    np.testing.assert_allclose(b.upper, [0.5, 0.7])
    assert ece(PROBS, LABELS, n_bins=2) == pytest.approx(0.5 * 0.05 + 0.5 * 0.15)
    assert mce(PROBS, LABELS, n_bins=2) == pytest.approx(0.15)


def test_four_point_example_equal_width_by_hand():
    # [0, 0.5) = {0.4 wrong}: gap 0.4.  [0.5, 1] = {0.5 right, 0.6 wrong, 0.7 right}:
    # confidence 0.6, accuracy 2/3, gap 1/15.
    b = reliability_bins(PROBS, LABELS, n_bins=2, binning="equal_width")
    np.testing.assert_allclose(b.lower, [0.0, 0.5])
    np.testing.assert_allclose(b.upper, [0.5, 1.0])
    np.testing.assert_allclose(b.confidence, [0.4, 0.6])
    np.testing.assert_allclose(b.accuracy, [0.0, 2 / 3])
    np.testing.assert_array_equal(b.count, [1, 3])
    assert ece(PROBS, LABELS, n_bins=2, binning="equal_width") == pytest.approx(
        0.25 * 0.4 + 0.75 / 15
    )
    assert mce(PROBS, LABELS, n_bins=2, binning="equal_width") == pytest.approx(0.4)
    # With 4 equal-width bins the first and last are empty and are skipped.
    four = reliability_bins(PROBS, LABELS, n_bins=4, binning="equal_width")
    np.testing.assert_array_equal(four.count, [0, 1, 3, 0])
    assert np.isnan(four.confidence[0]) and np.isnan(four.accuracy[3])
    assert four.ece == pytest.approx(0.25 * 0.4 + 0.75 / 15)
    assert four.mce == pytest.approx(0.4)


def test_equal_mass_is_the_default():
    assert ece(PROBS, LABELS, n_bins=2) == ece(PROBS, LABELS, n_bins=2, binning="equal_mass")
    assert len(reliability_bins(PROBS, LABELS).count) == 20


def test_bin_indices_rules():
    conf = np.array([0.0, 0.05, 0.5, 0.95, 1.0])
    np.testing.assert_array_equal(bin_indices(conf, 10, "equal_width"), [0, 0, 5, 9, 9])
    # Equal mass: ranks 0..4 of 5 into 2 bins -> floor(r * 2 / 5) = 0, 0, 0, 1, 1.
    np.testing.assert_array_equal(bin_indices(conf, 2, "equal_mass"), [0, 0, 0, 1, 1])
    # Ties share the bin of their lowest rank, whatever their order.
    tied = np.array([0.9, 0.3, 0.9, 0.9])
    np.testing.assert_array_equal(bin_indices(tied, 4, "equal_mass"), [1, 0, 1, 1])


def test_mce_at_least_ece_and_frame():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4), size=300)
    labels = rng.integers(0, 4, size=300)
    for binning in ("equal_mass", "equal_width"):
        b = reliability_bins(probs, labels, n_bins=10, binning=binning)
        assert b.n == 300
        assert b.mce >= b.ece
        frame = b.to_frame()
        assert list(frame.columns) == ["lower", "upper", "confidence", "accuracy", "count"]
        assert len(frame) == 10


def test_per_draw_input_uses_the_model_average():
    draws = np.stack([PROBS, PROBS[::-1]])  # (2, 4, 3)
    assert ece(draws, LABELS, n_bins=2) == pytest.approx(ece(draws.mean(0), LABELS, n_bins=2))
    assert mce(draws, LABELS, n_bins=3) == pytest.approx(mce(draws.mean(0), LABELS, n_bins=3))


def test_pooled_from_confidence_matches_probabilities():
    b1 = reliability_bins(PROBS, LABELS, n_bins=2)
    b2 = reliability_from_confidence([0.7, 0.6, 0.5, 0.4], [True, False, True, False], n_bins=2)
    np.testing.assert_allclose(b1.confidence, b2.confidence)
    np.testing.assert_allclose(b1.accuracy, b2.accuracy)


def test_validation():
    with pytest.raises(ValueError, match="binning"):
        mce(PROBS, LABELS, binning="quantile")
    with pytest.raises(ValueError, match="n_bins"):
        reliability_bins(PROBS, LABELS, n_bins=0)
    with pytest.raises(ValueError, match="one length"):
        reliability_from_confidence([0.5, 0.6], [True])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability_from_confidence([1.5], [True])
    with pytest.raises(ValueError, match="4 examples but labels has 3"):
        mce(PROBS, LABELS[:3])
