"""Getting probabilities out of predictors: model averages and, where possible, per draw.

A predictor is anything with `predict_proba(x)` returning `(n, k)` probabilities (or
`(draws, n, k)`, which is averaged). Per-draw probabilities, needed for mutual
information, come from, in order of preference:

1. a `predict_proba_draws(x) -> (draws, n, k)` method on the predictor;
2. a `Posterior` (all engines return one): every kept draw's
   softmax, computed here from its stored draws;
3. `predict_proba(x)` itself when it returns `(draws, n, k)`.

Anything else (a plain scikit-learn classifier, say) has no per-draw probabilities and
`has_draws` is False for it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from bnn_shift.inference.posterior import PROBABILITIES, Posterior

__all__ = ["DrawPredictor", "Predictor", "has_draws", "predict"]


@runtime_checkable
class Predictor(Protocol):
    """Anything that maps inputs `(n, ...)` to class probabilities `(n, k)`.

    A posterior, a MAP point or an ensemble all qualify. Per-draw output
    `(draws, n, k)` is also accepted and averaged over draws.
    """

    def predict_proba(self, x: Any) -> Any: ...


@runtime_checkable
class DrawPredictor(Protocol):
    """A predictor that can also return per-draw probabilities `(draws, n, k)`."""

    def predict_proba(self, x: Any) -> Any: ...

    def predict_proba_draws(self, x: Any) -> Any: ...


def has_draws(model: Any) -> bool:
    """Whether `predict` can give per-draw probabilities without calling the model.

    True for `predict_proba_draws` and for a `Posterior`; a predictor whose
    `predict_proba` happens to return `(draws, n, k)` is only recognised when called.
    """
    return isinstance(model, DrawPredictor | Posterior)


def _rows(n: int, batch_size: int | None) -> list[slice]:
    step = n if batch_size is None else max(1, batch_size)
    return [slice(i, min(i + step, n)) for i in range(0, n, step)] or [slice(0, 0)]


def _as_probs(p: Any, n: int, who: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim not in (2, 3) or p.shape[-2] != n:
        raise ValueError(
            f"{who} returned shape {p.shape} for {n} inputs; expected ({n}, k) or (draws, {n}, k)"
        )
    return p


def predict(
    model: Any, x: np.ndarray, batch_size: int | None = None, per_draw: bool = False
) -> np.ndarray:
    """Probabilities of `model` on `x` `(n, ...)` as float64, `batch_size` rows per call.

    `per_draw=False`: the model average `(n, k)` from `predict_proba` (per-draw output
    is averaged). `per_draw=True`: per-draw probabilities `(draws, n, k)` when the model
    can give them (see the module docstring), otherwise the model average `(n, k)`; the
    caller tells the two apart by `ndim`.
    """
    n = x.shape[0]
    if per_draw and isinstance(model, DrawPredictor):
        return np.concatenate(
            [
                _as_probs(model.predict_proba_draws(x[r]), r.stop - r.start, "predict_proba_draws")
                for r in _rows(n, batch_size)
            ],
            axis=1,
        )
    if per_draw and isinstance(model, Posterior):
        if model.likelihood.name not in PROBABILITIES:
            raise ValueError(f"a {model.likelihood.describe()} posterior has no probabilities")
        return model.predict_draws(x, batch_size).astype(np.float64)
    parts = [
        _as_probs(model.predict_proba(x[r]), r.stop - r.start, "predict_proba")
        for r in _rows(n, batch_size)
    ]
    if per_draw and all(p.ndim == 3 for p in parts):
        return np.concatenate(parts, axis=1)
    return np.concatenate([p.mean(axis=0) if p.ndim == 3 else p for p in parts])
