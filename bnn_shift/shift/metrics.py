"""Scalar metrics of predictive probabilities, and the registry `evaluate` uses.

Every metric takes `probs` shaped `(n, k)` (one probability vector per example) or
`(draws, n, k)` (per-draw probabilities). For the point metrics per-draw input is first
reduced to the Bayesian model average: the mean of the *probabilities* over axis 0 (never
of logits). All arithmetic is float64 and every metric returns a Python `float`.

Inputs are validated; a `ValueError` names the problem when shapes disagree, labels are
not integers in `[0, k)`, or probabilities are not finite, negative, or have rows that
do not sum to 1 within `SUM_TOL`.

ECE and MCE use 20 equal-mass bins by default (see `bnn_shift.shift.calibration`);
`ece_equal_width` in the registry is ECE with 20 equal-width bins.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from bnn_shift.shift.calibration import ece, mce
from bnn_shift.shift.probabilities import SUM_TOL, check_labels, check_probs, check_scored
from bnn_shift.shift.uncertainty import mutual_information, predictive_entropy

__all__ = [
    "DEFAULT_METRICS",
    "DRAW_METRICS",
    "METRICS",
    "PROB_FLOOR",
    "SUM_TOL",
    "accuracy",
    "brier",
    "ece",
    "mce",
    "mean_entropy",
    "mean_mutual_information",
    "nll",
]

PROB_FLOOR = 1e-12
"""Probabilities are clipped below at this value before taking logs in `nll`."""


def accuracy(probs: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of examples whose most probable class (first on ties) equals the label."""
    p, y = check_scored(probs, labels)
    return float(np.mean(np.argmax(p, axis=-1) == y))


def nll(probs: ArrayLike, labels: ArrayLike) -> float:
    """Mean negative log probability of the true class (natural log).

    The true-class probability is clipped below at `PROB_FLOOR` (1e-12), so one
    confidently wrong example contributes at most `-log(1e-12) ≈ 27.6`.
    """
    p, y = check_scored(probs, labels)
    p_true = p[np.arange(y.shape[0]), y]  # (n,)
    return float(np.mean(-np.log(np.maximum(p_true, PROB_FLOOR))))


def brier(probs: ArrayLike, labels: ArrayLike) -> float:
    """Mean over examples of `sum_c (p_c - onehot(y)_c)²`; lies in `[0, 2]`.

    For two classes this is twice the usual binary Brier score `mean((p_1 - y)²)`.
    """
    p, y = check_scored(probs, labels)
    onehot = np.zeros_like(p)  # (n, k)
    onehot[np.arange(y.shape[0]), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=-1)))


def mean_entropy(probs: ArrayLike, labels: ArrayLike | None = None) -> float:
    """Mean predictive entropy (nats) of the model average; `labels` are only validated."""
    p = check_probs(probs)
    if labels is not None:
        check_labels(labels, *p.shape[-2:])
    return float(np.mean(predictive_entropy(p)))


def mean_mutual_information(draw_probs: ArrayLike) -> float:
    """Mean over examples of the mutual information (nats); needs `(draws, n, k)`."""
    return float(np.mean(mutual_information(draw_probs)))


METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "accuracy": accuracy,
    "nll": nll,
    "ece": ece,
    "brier": brier,
    "mce": mce,
    "ece_equal_width": functools.partial(ece, binning="equal_width"),
    "entropy": mean_entropy,
}
"""Metric name -> function `(probs, labels) -> float`, in reporting order."""

DRAW_METRICS: dict[str, Callable[[ArrayLike], float]] = {
    "mutual_info": mean_mutual_information,
}
"""Metrics that need per-draw probabilities `(draws, n, k)`: name -> `f(draw_probs)`."""

DEFAULT_METRICS: tuple[str, ...] = ("accuracy", "nll", "ece", "brier")
"""What `evaluate` reports unless told otherwise."""
