"""Predictive uncertainty: entropy, mutual information (BALD) and OOD detection scores.

Entropies are in nats. For per-draw probabilities `p_d` `(draws, n, k)` with model
average `p̄ = mean_d p_d`:

- predictive entropy `H[p̄]` (total uncertainty),
- expected entropy `mean_d H[p_d]` (aleatoric part),
- mutual information `I = H[p̄] - mean_d H[p_d] >= 0` (epistemic part, BALD).

OOD detection treats out-of-distribution examples as the positive class and a higher
uncertainty score as more likely OOD; AUROC and AUPR (average precision) come from
scikit-learn.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from bnn_shift.shift.probabilities import check_probs, model_average

__all__ = [
    "OOD_SCORES",
    "OodScore",
    "expected_entropy",
    "mutual_information",
    "ood_aupr",
    "ood_auroc",
    "ood_detection",
    "predictive_entropy",
    "uncertainty_score",
]

OodScore = Literal["entropy", "mutual_info", "confidence"]
OOD_SCORES: tuple[str, ...] = ("entropy", "mutual_info", "confidence")


def _entropy(p: np.ndarray) -> np.ndarray:  # (..., k) -> (...)
    """Shannon entropy in nats along the last axis, with 0 log 0 = 0."""
    logs = np.log(np.where(p > 0, p, 1.0))
    return -np.sum(p * logs, axis=-1)


def predictive_entropy(probs: ArrayLike) -> np.ndarray:  # (n,)
    """Entropy of the model-averaged prediction per example, in `[0, log k]` nats."""
    return _entropy(model_average(check_probs(probs)))


def expected_entropy(draw_probs: ArrayLike) -> np.ndarray:  # (n,)
    """Mean over draws of each draw's predictive entropy, per example; needs `(draws, n, k)`."""
    return _entropy(check_probs(draw_probs, draws=True)).mean(axis=0)


def mutual_information(draw_probs: ArrayLike) -> np.ndarray:  # (n,)
    """Mutual information between the label and the draw (BALD), per example, in nats.

    `H[mean_d p_d] - mean_d H[p_d]`; zero when every draw predicts the same vector. It is
    non-negative by concavity of entropy; round-off below zero is clipped to 0.
    """
    p = check_probs(draw_probs, draws=True)  # (draws, n, k)
    mi = _entropy(p.mean(axis=0)) - _entropy(p).mean(axis=0)
    return np.maximum(mi, 0.0)


def uncertainty_score(probs: ArrayLike, score: OodScore = "entropy") -> np.ndarray:  # (n,)
    """Per-example OOD score, higher = more uncertain.

    `"entropy"`: predictive entropy; `"mutual_info"`: mutual information (needs
    per-draw probabilities); `"confidence"`: minus the largest averaged probability.
    """
    if score == "entropy":
        return predictive_entropy(probs)
    if score == "mutual_info":
        return mutual_information(probs)
    if score == "confidence":
        return -model_average(check_probs(probs)).max(axis=-1)
    raise ValueError(f"score must be one of {OOD_SCORES}; got {score!r}")


def _labelled_scores(
    in_probs: ArrayLike, ood_probs: ArrayLike, score: OodScore
) -> tuple[np.ndarray, np.ndarray]:
    s_in = uncertainty_score(in_probs, score)  # (n_in,)
    s_ood = uncertainty_score(ood_probs, score)  # (n_ood,)
    is_ood = np.concatenate([np.zeros(s_in.shape[0]), np.ones(s_ood.shape[0])])
    return is_ood, np.concatenate([s_in, s_ood])


def ood_auroc(in_probs: ArrayLike, ood_probs: ArrayLike, score: OodScore = "entropy") -> float:
    """Area under the ROC curve for telling OOD (positive) from in-distribution examples.

    0.5 = no better than chance, 1 = every OOD example is more uncertain than every
    in-distribution one. Ties in the score count one half.
    """
    from sklearn.metrics import roc_auc_score

    is_ood, scores = _labelled_scores(in_probs, ood_probs, score)
    return float(roc_auc_score(is_ood, scores))


def ood_aupr(in_probs: ArrayLike, ood_probs: ArrayLike, score: OodScore = "entropy") -> float:
    """Area under the precision-recall curve (average precision) with OOD as positive.

    Chance level is the OOD fraction `n_ood / (n_in + n_ood)`, not 0.5.
    """
    from sklearn.metrics import average_precision_score

    is_ood, scores = _labelled_scores(in_probs, ood_probs, score)
    return float(average_precision_score(is_ood, scores))


def ood_detection(
    in_probs: ArrayLike, ood_probs: ArrayLike, score: OodScore = "entropy"
) -> dict[str, float]:
    """`{"auroc": ..., "aupr": ...}` for one in-distribution / OOD pair."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    is_ood, scores = _labelled_scores(in_probs, ood_probs, score)
    return {
        "auroc": float(roc_auc_score(is_ood, scores)),
        "aupr": float(average_precision_score(is_ood, scores)),
    }
