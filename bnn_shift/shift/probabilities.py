"""Validation of predictive probabilities and labels, shared by every metric.

Probabilities come as `(n, k)` (one vector per example) or `(draws, n, k)` (one per
posterior draw, ensemble member, ...). Everything is converted to float64 here, so the
metrics downstream compute in double precision whatever dtype the predictor returned.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["SUM_TOL", "check_labels", "check_probs", "check_scored", "model_average"]

SUM_TOL = 1e-3
"""Largest allowed `|sum(row) - 1|` for a probability row (float32 softmax is far inside)."""


def check_probs(probs: ArrayLike, *, draws: bool | None = None) -> np.ndarray:
    """Return `probs` as float64 `(n, k)` or `(draws, n, k)` after validating it.

    `draws=True` requires the per-draw form, `draws=False` the `(n, k)` form and
    `None` accepts either. Raises `ValueError` naming the problem for a wrong rank,
    an empty array, non-finite or negative entries, or rows that do not sum to 1.
    """
    p = np.asarray(probs, dtype=np.float64)
    allowed = {None: (2, 3), True: (3,), False: (2,)}[draws]
    if p.ndim not in allowed:
        wanted = " or ".join({2: "(n, k)", 3: "(draws, n, k)"}[d] for d in allowed)
        hint = "; per-draw probabilities are needed here" if draws else ""
        raise ValueError(f"probs must have shape {wanted}; got shape {p.shape}{hint}")
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
            f"probs rows must sum to 1 within {SUM_TOL} (pass probabilities, not logits); "
            f"row {tuple(map(int, worst))} sums to {sums[worst]:.6g}"
        )
    return p


def model_average(p: np.ndarray) -> np.ndarray:
    """The Bayesian model average `(n, k)`: the mean of the probabilities over draws."""
    return p.mean(axis=0) if p.ndim == 3 else p


def check_labels(labels: ArrayLike, n: int, k: int) -> np.ndarray:
    """Return `labels` as int64 `(n,)` after checking they are integers in `[0, k)`."""
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
    return y.astype(np.int64)


def check_scored(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Model-averaged float64 probabilities `(n, k)` and int64 labels `(n,)`."""
    p = model_average(check_probs(probs))  # (n, k)
    return p, check_labels(labels, *p.shape)
