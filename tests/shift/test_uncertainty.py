"""Tests for bnn_shift.shift.uncertainty: entropy, mutual information, OOD scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy
from sklearn.metrics import average_precision_score, roc_auc_score

from bnn_shift.shift.uncertainty import (
    expected_entropy,
    mutual_information,
    ood_aupr,
    ood_auroc,
    ood_detection,
    predictive_entropy,
    uncertainty_score,
)


def test_entropy_values():
    probs = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(predictive_entropy(probs), [0.0, math.log(3), math.log(2)])
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=50)
    np.testing.assert_allclose(predictive_entropy(p), scipy_entropy(p, axis=1))


def test_mutual_information_zero_when_draws_agree():
    p = np.random.default_rng(1).dirichlet(np.ones(4), size=7)  # (7, 4)
    draws = np.stack([p, p, p])  # (3, 7, 4)
    np.testing.assert_allclose(mutual_information(draws), 0.0, atol=1e-15)
    np.testing.assert_allclose(expected_entropy(draws), predictive_entropy(p))


def test_mutual_information_two_draw_example_by_hand():
    # Example 0: draws (1, 0) and (0, 1): mean (0.5, 0.5), H = log 2, mean H = 0 -> log 2.
    # Example 1: draws (0.8, 0.2) and (0.4, 0.6): mean (0.6, 0.4).
    draws = np.array([[[1.0, 0.0], [0.8, 0.2]], [[0.0, 1.0], [0.4, 0.6]]])  # (2, 2, 2)
    h = lambda *p: -sum(q * math.log(q) for q in p if q > 0)
    mi1 = h(0.6, 0.4) - (h(0.8, 0.2) + h(0.4, 0.6)) / 2
    np.testing.assert_allclose(mutual_information(draws), [math.log(2), mi1])
    np.testing.assert_allclose(predictive_entropy(draws), [math.log(2), h(0.6, 0.4)])
    np.testing.assert_allclose(expected_entropy(draws), [0.0, (h(0.8, 0.2) + h(0.4, 0.6)) / 2])


def test_mutual_information_needs_draws():
    with pytest.raises(ValueError, match=r"\(draws, n, k\).*per-draw"):
        mutual_information(np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="sum to 1"):
        predictive_entropy(np.array([[2.0, 1.0]]))


def test_ood_scores_match_sklearn():
    rng = np.random.default_rng(2)
    p_in = rng.dirichlet(np.full(10, 0.2), size=200)  # peaked: low entropy
    p_ood = rng.dirichlet(np.full(10, 2.0), size=150)  # flat: high entropy
    y = np.r_[np.zeros(200), np.ones(150)]
    s = np.r_[scipy_entropy(p_in, axis=1), scipy_entropy(p_ood, axis=1)]
    assert ood_auroc(p_in, p_ood) == pytest.approx(roc_auc_score(y, s))
    assert ood_aupr(p_in, p_ood) == pytest.approx(average_precision_score(y, s))
    assert ood_auroc(p_in, p_ood) > 0.9
    conf = -np.r_[p_in.max(1), p_ood.max(1)]
    found = ood_detection(p_in, p_ood, score="confidence")
    assert found["auroc"] == pytest.approx(roc_auc_score(y, conf))
    assert found["aupr"] == pytest.approx(average_precision_score(y, conf))


def test_ood_hand_example():
    # In-distribution entropies 0 and log 2; OOD entropy log 2 (tie) and log 3.
    p_in = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    p_ood = np.array([[0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    # Pairs (in, ood) ranked correctly: (0, log2) 1, (0, log3) 1, (log2, log2) 1/2,
    # (log2, log3) 1 -> 3.5 / 4.
    assert ood_auroc(p_in, p_ood) == pytest.approx(3.5 / 4)
    # Perfectly separated -> 1, reversed -> 0.
    assert ood_auroc(p_in[:1], p_ood) == pytest.approx(1.0)
    assert ood_auroc(p_ood[1:], p_in[:1]) == pytest.approx(0.0)


def test_mutual_info_score_uses_draws():
    agree = np.stack([np.eye(3)[[0, 1]]] * 2)  # (2, 2, 3): draws agree, MI 0
    disagree = np.stack([np.eye(3)[[0, 1]], np.eye(3)[[1, 2]]])  # MI log 2
    assert ood_auroc(agree, disagree, score="mutual_info") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="score must be"):
        uncertainty_score(agree, "variance")
