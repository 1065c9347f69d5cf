"""Getting probabilities out of predictors: model averages and, where possible, per draw.

A predictor is anything with ``predict_proba(x)`` returning ``(n, k)`` probabilities (or
``(draws, n, k)``, which is averaged). Per-draw probabilities, needed for mutual
information, come from, in order of preference:

1. a ``predict_proba_draws(x) -> (draws, n, k)`` method on the predictor;
2. a :class:`~bnn_shift.inference.Posterior` (all engines return one): every kept draw's
   softmax, computed here from its stored draws;
3. ``predict_proba(x)`` itself when it returns ``(draws, n, k)``.

Anything else (a plain scikit-learn classifier, say) has no per-draw probabilities and
:func:`has_draws` is False for it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.inference.likelihood import predict_probs
from bnn_shift.inference.posterior import Posterior
from bnn_shift.models.params import PyTree

__all__ = ["DrawPredictor", "Predictor", "has_draws", "predict"]

DRAW_CHUNK_FLOATS = 2**24
"""Per-draw predictions are made in row chunks of at most this many floats (64 MiB float32)."""


@runtime_checkable
class Predictor(Protocol):
    """Anything that maps inputs ``(n, ...)`` to class probabilities ``(n, k)``.

    A posterior, a MAP point or an ensemble all qualify. Per-draw output
    ``(draws, n, k)`` is also accepted and averaged over draws.
    """

    def predict_proba(self, x: Any) -> Any: ...


@runtime_checkable
class DrawPredictor(Protocol):
    """A predictor that can also return per-draw probabilities ``(draws, n, k)``."""

    def predict_proba(self, x: Any) -> Any: ...

    def predict_proba_draws(self, x: Any) -> Any: ...


@eqx.filter_jit
def _posterior_draw_probs(draws: PyTree, static: PyTree, x: jax.Array) -> jax.Array:
    """Softmax predictions of every draw, one draw at a time: ``(draws, n, k)``."""
    return jax.lax.map(lambda params: predict_probs(params, static, x), draws)


def has_draws(model: Any) -> bool:
    """Whether :func:`predict` can give per-draw probabilities without calling the model.

    True for ``predict_proba_draws`` and for a :class:`Posterior`; a predictor whose
    ``predict_proba`` happens to return ``(draws, n, k)`` is only recognised when called.
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


def _posterior_draws(model: Posterior, x: np.ndarray, batch_size: int | None) -> np.ndarray:
    """Every draw's softmax ``(draws, n, k)``, in row chunks bounded by ``DRAW_CHUNK_FLOATS``."""
    if model.n_draws == 0:
        raise ValueError("this posterior has no draws, so it cannot predict")
    x = np.asarray(x, np.float32)
    draws = jax.tree.map(jnp.asarray, model.draws)  # on the device once, not once per chunk
    probe = jax.eval_shape(_posterior_draw_probs, draws, model.static, x[:1])  # (d, 1, k)
    limit = max(1, DRAW_CHUNK_FLOATS // (model.n_draws * probe.shape[-1]))
    step = limit if batch_size is None else min(limit, batch_size)
    parts = [
        np.asarray(_posterior_draw_probs(draws, model.static, jnp.asarray(x[r])))
        for r in _rows(x.shape[0], step)
    ]
    return np.concatenate(parts, axis=1).astype(np.float64)


def predict(
    model: Any, x: np.ndarray, batch_size: int | None = None, per_draw: bool = False
) -> np.ndarray:
    """Probabilities of ``model`` on ``x`` ``(n, ...)`` as float64, ``batch_size`` rows per call.

    ``per_draw=False``: the model average ``(n, k)`` from ``predict_proba`` (per-draw output
    is averaged). ``per_draw=True``: per-draw probabilities ``(draws, n, k)`` when the model
    can give them (see the module docstring), otherwise the model average ``(n, k)``; the
    caller tells the two apart by ``ndim``.
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
        return _posterior_draws(model, x, batch_size)
    parts = [
        _as_probs(model.predict_proba(x[r]), r.stop - r.start, "predict_proba")
        for r in _rows(n, batch_size)
    ]
    if per_draw and all(p.ndim == 3 for p in parts):
        return np.concatenate(parts, axis=1)
    return np.concatenate([p.mean(axis=0) if p.ndim == 3 else p for p in parts])
