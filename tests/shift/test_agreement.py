"""Agreement and total variation against a reference model average (exact small cases)."""

import numpy as np
import pytest

from bnn_shift.shift.agreement import agreement, closeness, total_variation

REFERENCE = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]])
OTHER = np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.3, 0.3, 0.4], [0.2, 0.5, 0.3]])


def test_agreement_counts_points_whose_top_class_matches():
    assert agreement(OTHER, REFERENCE) == 0.5  # points 0 and 2 agree, 1 and 3 do not
    assert agreement(REFERENCE, REFERENCE) == 1.0


def test_total_variation_is_half_the_l1_distance_averaged_over_points():
    per_point = [0.1, 0.5, 0.0, 0.3]  # (1/2) * sum |p - q| by hand
    assert total_variation(OTHER, REFERENCE) == pytest.approx(np.mean(per_point), abs=1e-12)
    assert total_variation(REFERENCE, REFERENCE) == 0.0
    one_hot = np.eye(3)
    assert total_variation(one_hot, one_hot[[1, 2, 0]]) == 1.0  # disjoint supports


def test_sequence_predictions_compare_per_position():
    seq, ref = OTHER.reshape(2, 2, 3), REFERENCE.reshape(2, 2, 3)
    assert closeness(seq, ref) == closeness(OTHER, REFERENCE)


def test_mismatched_shapes_and_non_probabilities_are_refused():
    with pytest.raises(ValueError, match="same inputs"):
        agreement(OTHER[:3], REFERENCE)
    with pytest.raises(ValueError, match="sum to 1"):
        total_variation(OTHER * 2, REFERENCE)
