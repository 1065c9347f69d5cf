"""Classification metrics for predictive probabilities: accuracy, NLL, ECE, Brier.

Every metric takes ``probs`` shaped ``(n, k)`` (one probability vector per example) or
``(draws, n, k)`` (per-draw probabilities), and integer ``labels`` shaped ``(n,)``.
Per-draw input is first reduced to the Bayesian model average: the mean of the
*probabilities* over axis 0 (never of logits). All arithmetic is float64 and every
metric returns a Python ``float``.

Inputs are validated; a ``ValueError`` names the problem when shapes disagree, labels
are not integers in ``[0, k)``, or probabilities are not finite, negative, or have rows
that do not sum to 1 within ``SUM_TOL``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["METRICS", "PROB_FLOOR", "SUM_TOL", "accuracy", "brier", "ece", "nll"]

SUM_TOL = 1e-3
"""Largest allowed ``|sum(row) - 1|`` for a probability row."""

PROB_FLOOR = 1e-12
"""Probabilities are clipped below at this value before taking logs in :func:`nll`."""

Binning = Literal["equal_mass", "equal_width"]


def _validate(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return float64 probabilities ``(n, k)`` (draws averaged) and int64 labels ``(n,)``."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim not in (2, 3):
        raise ValueError(f"probs must have shape (n, k) or (draws, n, k); got shape {p.shape}")
    if 0 in p.shape:
        raise ValueError(f"probs must be non-empty; got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains non-finite values (nan or inf)")
    if np.any(p < 0):
        raise ValueError(f"probs contains negative values (min {p.min():.3g})")
    sums = p.sum(axis=-1)
    err = np.abs(sums - 1.0)
    if np.any(err > SUM_TOL):
        worst = np.unravel_index(np.argmax(err), err.shape)
        raise ValueError(
            f"probs rows must sum to 1 within {SUM_TOL}; row {tuple(map(int, worst))} "
            f"sums to {sums[worst]:.6g}"
        )
    if p.ndim == 3:
        p = p.mean(axis=0)  # (n, k): Bayesian model average over draws
    n, k = p.shape

    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must have shape (n,); got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers; got dtype {y.dtype}")
    if y.shape[0] != n:
        raise ValueError(f"probs has {n} examples but labels has {y.shape[0]}")
    if np.any((y < 0) | (y >= k)):
        raise ValueError(
            f"labels must lie in [0, {k}) for {k} classes; got range [{y.min()}, {y.max()}]"
        )
    return p, y.astype(np.int64)


def accuracy(probs: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of examples whose most probable class (first on ties) equals the label."""
    p, y = _validate(probs, labels)
    return float(np.mean(np.argmax(p, axis=-1) == y))


def nll(probs: ArrayLike, labels: ArrayLike) -> float:
    """Mean negative log probability of the true class.

    The true-class probability is clipped below at ``PROB_FLOOR`` (1e-12), so one
    confidently wrong example contributes at most ``-log(1e-12) ≈ 27.6``.
    """
    p, y = _validate(probs, labels)
    p_true = p[np.arange(y.shape[0]), y]  # (n,)
    return float(np.mean(-np.log(np.maximum(p_true, PROB_FLOOR))))


def brier(probs: ArrayLike, labels: ArrayLike) -> float:
    """Mean over examples of ``sum_c (p_c - onehot(y)_c)²``; lies in ``[0, 2]``.

    For two classes this is twice the usual binary Brier score ``mean((p_1 - y)²)``.
    """
    p, y = _validate(probs, labels)
    onehot = np.zeros_like(p)  # (n, k)
    onehot[np.arange(y.shape[0]), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=-1)))


def ece(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 20,
    binning: Binning = "equal_mass",
) -> float:
    """Expected calibration error with confidence = max probability; lies in ``[0, 1]``.

    ``ECE = sum_b (|b| / n) * |mean confidence in b - accuracy in b|`` over non-empty bins.

    Binning rules (every example lands in exactly one bin):

    - ``"equal_mass"`` (default; the paper's choice with 20 bins): an example whose
      confidence has rank ``r`` (the number of examples with strictly lower confidence)
      goes to bin ``floor(r * n_bins / n)``. Without ties the bins are contiguous runs of
      the sorted confidences whose sizes differ by at most one. Tied confidences always
      share a bin (the one of their lowest rank), so the result does not depend on the
      order of the examples; heavy ties can make a bin larger than ``n / n_bins``.
    - ``"equal_width"``: bin ``b`` is ``[b / n_bins, (b + 1) / n_bins)``, with the last
      bin closed at 1.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    if binning not in ("equal_mass", "equal_width"):
        raise ValueError(f"binning must be 'equal_mass' or 'equal_width'; got {binning!r}")
    p, y = _validate(probs, labels)
    n = y.shape[0]
    conf = p.max(axis=-1)  # (n,)
    correct = (np.argmax(p, axis=-1) == y).astype(np.float64)  # (n,)

    if binning == "equal_mass":
        rank = np.searchsorted(np.sort(conf), conf, side="left")  # (n,) ties share a rank
        bins = rank * int(n_bins) // n  # (n,) in [0, n_bins)
    else:
        bins = np.clip(np.floor(conf * n_bins).astype(np.int64), 0, n_bins - 1)  # (n,)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    corr_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    # Per bin, size * |mean conf - accuracy| = |sum conf - sum correct|; empty bins add 0.
    return float(np.sum(np.abs(conf_sum - corr_sum)) / n)


METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "accuracy": accuracy,
    "nll": nll,
    "ece": ece,
    "brier": brier,
}
"""Metric name -> function ``(probs, labels) -> float``, in reporting order."""
