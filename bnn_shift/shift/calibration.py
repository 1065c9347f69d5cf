"""Calibration: confidence bins, reliability-diagram data, ECE and MCE.

Confidence is the largest model-averaged probability of an example and "correct" means
its argmax (first on ties) equals the label. Two binnings are offered:

- `"equal_mass"` (the default, with 20 bins, as in the covariate-shift paper): bins hold
  (nearly) equal numbers of examples. An example whose confidence has rank `r` (the
  number of examples with strictly lower confidence) goes to bin `floor(r * n_bins / n)`.
  Without ties the bins are contiguous runs of the sorted confidences whose sizes differ
  by at most one. Tied confidences always share one bin (the bin of their lowest rank), so
  every example is counted exactly once and the result does not depend on example order;
  heavy ties can make a bin larger than `n / n_bins` and leave later bins empty. (The
  reference implementation uses strict inequalities at quantile edges and silently drops
  examples lying exactly on an edge; this rule keeps them.)
- `"equal_width"`: bin `b` is `[b / n_bins, (b + 1) / n_bins)`, the last bin closed at 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from bnn_shift.shift.probabilities import check_scored

__all__ = [
    "BINNINGS",
    "DEFAULT_BINNING",
    "DEFAULT_N_BINS",
    "Binning",
    "ReliabilityBins",
    "bin_indices",
    "ece",
    "mce",
    "reliability_bins",
    "reliability_from_confidence",
]

Binning = Literal["equal_mass", "equal_width"]
BINNINGS: tuple[str, ...] = ("equal_mass", "equal_width")
DEFAULT_BINNING: Binning = "equal_mass"
DEFAULT_N_BINS = 20


def _check_bins(n_bins: int, binning: str) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    if binning not in BINNINGS:
        raise ValueError(f"binning must be 'equal_mass' or 'equal_width'; got {binning!r}")


def bin_indices(
    confidence: np.ndarray, n_bins: int = DEFAULT_N_BINS, binning: Binning = DEFAULT_BINNING
) -> np.ndarray:  # (n,) int64 in [0, n_bins)
    """The bin of each confidence in `[0, 1]` under the rules in the module docstring."""
    _check_bins(n_bins, binning)
    conf = np.asarray(confidence, dtype=np.float64)  # (n,)
    n = conf.shape[0]
    if binning == "equal_mass":
        rank = np.searchsorted(np.sort(conf), conf, side="left")  # (n,) ties share a rank
        return (rank * int(n_bins) // max(n, 1)).astype(np.int64)
    return np.clip(np.floor(conf * n_bins).astype(np.int64), 0, n_bins - 1)


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin reliability-diagram data, every array shaped `(n_bins,)`.

    `lower`/`upper` are the bin edges: the fixed interval for `"equal_width"`; for
    `"equal_mass"` the smallest and largest confidence that fell in the bin. Empty bins
    have `count` 0 and NaN `confidence`, `accuracy` (and equal-mass edges).
    """

    binning: str
    lower: np.ndarray
    upper: np.ndarray
    confidence: np.ndarray  # mean confidence of the bin's examples
    accuracy: np.ndarray  # fraction of the bin's examples classified correctly
    count: np.ndarray  # int64

    @property
    def n(self) -> int:
        return int(self.count.sum())

    @property
    def gap(self) -> np.ndarray:  # (n_bins,)
        """`|confidence - accuracy|` per bin (NaN for empty bins)."""
        return np.abs(self.confidence - self.accuracy)

    @property
    def ece(self) -> float:
        """`sum_b (count_b / n) * gap_b` over non-empty bins."""
        full = self.count > 0
        return float(np.sum(self.count[full] * self.gap[full]) / self.n)

    @property
    def mce(self) -> float:
        """`max_b gap_b` over non-empty bins."""
        return float(np.max(self.gap[self.count > 0]))

    def to_frame(self) -> pd.DataFrame:
        """One row per bin: lower, upper, confidence, accuracy, count."""
        return pd.DataFrame(
            {
                "lower": self.lower,
                "upper": self.upper,
                "confidence": self.confidence,
                "accuracy": self.accuracy,
                "count": self.count,
            }
        ).rename_axis("bin")


def reliability_from_confidence(
    confidence: ArrayLike,
    correct: ArrayLike,
    n_bins: int = DEFAULT_N_BINS,
    binning: Binning = DEFAULT_BINNING,
) -> ReliabilityBins:
    """Reliability bins from per-example confidences `(n,)` in [0, 1] and correctness `(n,)`.

    Useful for pooling several evaluation sets without keeping their probabilities.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct)
    if conf.ndim != 1 or hit.shape != conf.shape or conf.size == 0:
        raise ValueError(
            f"confidence and correct must be non-empty (n,) arrays of one length; "
            f"got {conf.shape} and {hit.shape}"
        )
    if not np.all((conf >= 0) & (conf <= 1)):
        raise ValueError("confidence must lie in [0, 1]")
    hit = hit.astype(np.float64)
    bins = bin_indices(conf, n_bins, binning)  # (n,)
    count = np.bincount(bins, minlength=n_bins)  # (n_bins,)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / count
        acc = np.bincount(bins, weights=hit, minlength=n_bins) / count
    if binning == "equal_width":
        edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
        lower, upper = edges[:-1], edges[1:]
    else:
        lower = np.full(n_bins, np.nan)
        upper = np.full(n_bins, np.nan)
        np.fmin.at(lower, bins, conf)  # fmin ignores the NaN start value
        np.fmax.at(upper, bins, conf)
    return ReliabilityBins(binning, lower, upper, mean_conf, acc, count.astype(np.int64))


def reliability_bins(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = DEFAULT_N_BINS,
    binning: Binning = DEFAULT_BINNING,
) -> ReliabilityBins:
    """Reliability-diagram data for probabilities `(n, k)` or `(draws, n, k)` (averaged)."""
    _check_bins(n_bins, binning)
    p, y = check_scored(probs, labels)  # (n, k), (n,)
    return reliability_from_confidence(p.max(axis=-1), np.argmax(p, axis=-1) == y, n_bins, binning)


def ece(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = DEFAULT_N_BINS,
    binning: Binning = DEFAULT_BINNING,
) -> float:
    """Expected calibration error in `[0, 1]`; 20 equal-mass bins by default.

    `ECE = sum_b (|b| / n) * |mean confidence in b - accuracy in b|` over non-empty
    bins; see the module docstring for how examples are assigned to bins.
    """
    return reliability_bins(probs, labels, n_bins, binning).ece


def mce(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = DEFAULT_N_BINS,
    binning: Binning = DEFAULT_BINNING,
) -> float:
    """Maximum calibration error in `[0, 1]`: the largest per-bin gap over non-empty bins.

    Same bins as `ece` (20 equal-mass by default). With equal-mass bins every bin
    holds about `n / n_bins` examples, so MCE is much less noisy than with equal width,
    where a nearly empty bin can dominate.
    """
    return reliability_bins(probs, labels, n_bins, binning).mce
