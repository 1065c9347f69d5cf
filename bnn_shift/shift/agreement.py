"""How close a posterior's predictions are to a reference posterior's (Izmailov et al. 2021).

Top-1 agreement: the share of points where the two model averages predict the same class.
Total variation: the mean over points of (1/2) * sum_k |p_k - p_ref_k|. Both compare model
averages point by point, so they see what accuracy hides: two posteriors can be equally accurate
and disagree on which points they get right.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from bnn_shift.shift.probabilities import check_probs


def _pair(probs: ArrayLike, reference: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both as checked (points, k) probabilities; sequence axes (n, T, k) become points."""
    p, ref = np.asarray(probs), np.asarray(reference)
    if p.shape != ref.shape:
        raise ValueError(
            f"predictions of shape {p.shape} cannot be compared with reference predictions of "
            f"shape {ref.shape}: both must be model averages on the same inputs"
        )
    k = p.shape[-1]
    return check_probs(p.reshape(-1, k)), check_probs(ref.reshape(-1, k))


def agreement(probs: ArrayLike, reference: ArrayLike) -> float:
    """Share of points whose most probable class is the reference's; probs (n, [T,] k)."""
    p, ref = _pair(probs, reference)
    return float(np.mean(np.argmax(p, axis=-1) == np.argmax(ref, axis=-1)))


def total_variation(probs: ArrayLike, reference: ArrayLike) -> float:
    """Mean over points of the total-variation distance to the reference's probabilities."""
    p, ref = _pair(probs, reference)
    return float(np.mean(0.5 * np.abs(p.astype(np.float64) - ref).sum(axis=-1)))


def closeness(probs: ArrayLike, reference: ArrayLike) -> dict[str, float]:
    """{"agreement", "total_variation"} of `probs` against `reference`."""
    return {
        "agreement": agreement(probs, reference),
        "total_variation": total_variation(probs, reference),
    }
