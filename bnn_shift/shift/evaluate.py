"""Run predictors over shifted copies of a dataset and collect tidy metric tables."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from tqdm.auto import tqdm

from bnn_shift.data import Dataset
from bnn_shift.shift.metrics import DEFAULT_METRICS, DRAW_METRICS, METRICS
from bnn_shift.shift.noise import Shift
from bnn_shift.shift.predictors import Predictor, predict
from bnn_shift.shift.probabilities import model_average
from bnn_shift.shift.uncertainty import OOD_SCORES, ood_detection

__all__ = ["COLUMNS", "OOD_COLUMNS", "ProbsCallback", "evaluate", "ood_scores"]

COLUMNS = ("method", "shift", "severity", "metric", "value")
"""Columns of the tidy table returned by `evaluate`, in order."""

OOD_COLUMNS = ("method", "ood", "score", "metric", "value")
"""Columns of the tidy table returned by `ood_scores`, in order."""

ProbsCallback = Callable[[str, Shift, np.ndarray, np.ndarray], None]
"""`callback(method, shift, probs (n, k), labels (n,))`, called once per scored set."""


def _check_methods(methods: Mapping[str, Predictor]) -> None:
    if not methods:
        raise ValueError("methods is empty; pass at least one {name: predictor}")
    for name, model in methods.items():
        if not isinstance(model, Predictor):
            raise TypeError(f"method {name!r} has no predict_proba(x) method")


def _check_batch_size(batch_size: int | None) -> None:
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}")


def _resolve_data(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """`(x, y)` of a Dataset's test split or of a pair (see `evaluate`)."""
    if isinstance(data, Dataset):
        x, y = data.x_test, data.y_test
    elif isinstance(data, tuple) and len(data) == 2:
        x, y = data
    else:
        raise TypeError(
            "data must be a bnn_shift.data.Dataset (its test split is used) or a pair (x, y), "
            f"as in evaluate(methods, (x, y), shifts); got {type(data).__name__}"
        )
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 1 or y.ndim != 1:
        raise ValueError(f"expected x (n, ...) and y (n,); got {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
    if x.shape[0] == 0:
        raise ValueError("x and y are empty")
    return x, y


def evaluate(
    methods: Mapping[str, Predictor],
    data: Dataset | tuple[ArrayLike, ArrayLike],
    shifts: Sequence[Shift],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    batch_size: int | None = None,
    progress: bool = True,
    callback: ProbsCallback | None = None,
) -> pd.DataFrame:
    """Score every method on every shifted copy of a test set.

    Each shift is applied once and its output reused for all methods.

    Args:
        methods: name -> anything with `predict_proba(x)`.
        data: a `bnn_shift.data.Dataset` (its test split is scored) or a pair `(x, y)` of
            inputs `(n, ...)` and integer labels `(n,)`.
        shifts: the shifted copies to score, e.g. `noise_sweep()`.
        metrics: keys of `METRICS` (ECE/MCE with 20 equal-mass bins) or of `DRAW_METRICS`
            (`"mutual_info"`, which needs per-draw probabilities: methods that cannot give
            them get no such rows, with one warning naming them).
        batch_size: bounds the rows per `predict_proba` call.
        progress: show a progress bar.
        callback: `callback(method, shift, probs, labels)` sees each model average `(n, k)`
            (e.g. to pool reliability data without keeping every set).

    Returns:
        A tidy DataFrame with columns `method, shift, severity, metric, value`: one row per
        (shift, method, metric), in that nesting order.
    """
    x, y = _resolve_data(data)
    _check_methods(methods)
    if not shifts:
        raise ValueError("shifts is empty; pass at least one Shift (e.g. noise_sweep())")
    keys = [(s.name, float(s.severity)) for s in shifts]
    if len(set(keys)) != len(keys):
        raise ValueError(f"shifts contain a repeated (name, severity) pair: {keys}")
    if isinstance(metrics, str):
        metrics = (metrics,)
    known = {**METRICS, **DRAW_METRICS}
    unknown = [m for m in metrics if m not in known]
    if unknown or not metrics:
        raise ValueError(f"unknown metrics {unknown}; choose from {sorted(known)}")
    _check_batch_size(batch_size)
    want_draws = any(m in DRAW_METRICS for m in metrics)

    rows: list[tuple[str, str, float, str, float]] = []
    no_draws: list[str] = []
    bar = tqdm(total=len(shifts) * len(methods), disable=not progress, desc="evaluate")
    try:
        for shift in shifts:
            xs = np.asarray(shift.apply(x))  # (n, ...)
            if xs.shape[0] != x.shape[0]:
                raise ValueError(
                    f"shift {shift.name!r} (severity {shift.severity}) changed the number "
                    f"of examples from {x.shape[0]} to {xs.shape[0]}"
                )
            for name, model in methods.items():
                bar.set_postfix_str(f"{shift.name}@{shift.severity:g} {name}")
                probs = predict(model, xs, batch_size, per_draw=want_draws)  # (n, k) | (d, n, k)
                if want_draws and probs.ndim == 2 and name not in no_draws:
                    no_draws.append(name)
                for metric in metrics:
                    if metric in DRAW_METRICS and probs.ndim == 2:
                        continue
                    try:
                        if metric in DRAW_METRICS:
                            value = DRAW_METRICS[metric](probs)
                        else:
                            value = METRICS[metric](probs, y)
                    except ValueError as err:
                        raise ValueError(
                            f"method {name!r} on shift {shift.name!r} "
                            f"(severity {shift.severity}): {err}"
                        ) from err
                    rows.append((name, shift.name, float(shift.severity), metric, value))
                if callback is not None:
                    callback(name, shift, model_average(probs), y)
                bar.update()
    finally:
        bar.close()
    if no_draws:
        skipped = [m for m in metrics if m in DRAW_METRICS]
        warnings.warn(
            f"methods {no_draws} give no per-draw probabilities, so {skipped} was skipped "
            "for them (a Posterior, predict_proba_draws(x) or (draws, n, k) output provides them)",
            stacklevel=2,
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def ood_scores(
    methods: Mapping[str, Predictor],
    in_x: ArrayLike,
    ood_x: ArrayLike | Mapping[str, ArrayLike],
    *,
    scores: Sequence[str] = ("entropy",),
    batch_size: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """How well each method's uncertainty separates OOD inputs from in-distribution ones.

    `in_x` `(n, ...)` are in-distribution inputs; `ood_x` is one OOD input array or
    a mapping `{name: array}` of several (a single array is named `"ood"`). For each
    uncertainty score (`"entropy"`, `"mutual_info"`, `"confidence"`; higher = more
    likely OOD) reports AUROC and AUPR (average precision, OOD = positive class).
    `"mutual_info"` is skipped, with a warning, for methods without per-draw
    probabilities. Returns a tidy DataFrame with columns `method, ood, score, metric,
    value`.
    """
    _check_methods(methods)
    _check_batch_size(batch_size)
    if isinstance(scores, str):
        scores = (scores,)
    bad = [s for s in scores if s not in OOD_SCORES]
    if bad or not scores:
        raise ValueError(f"unknown scores {bad}; choose from {list(OOD_SCORES)}")
    sets = dict(ood_x) if isinstance(ood_x, Mapping) else {"ood": ood_x}
    if not sets:
        raise ValueError("ood_x is empty; pass an array or {name: array}")
    arrays = [("in-distribution", np.asarray(in_x))]
    arrays += [(k, np.asarray(v)) for k, v in sets.items()]
    for k, v in arrays:
        if v.ndim < 1 or v.shape[0] == 0:
            raise ValueError(f"the {k!r} inputs must be a non-empty (n, ...) array; got {v.shape}")
    want_draws = "mutual_info" in scores

    rows: list[tuple[str, str, str, str, float]] = []
    no_draws: list[str] = []
    bar = tqdm(total=len(methods) * len(arrays), disable=not progress, desc="ood")
    try:
        for name, model in methods.items():
            per_set = []
            for k, v in arrays:
                bar.set_postfix_str(f"{name} {k}")
                per_set.append(predict(model, v, batch_size, per_draw=want_draws))
                bar.update()
            drawless = any(p.ndim == 2 for p in per_set)
            if want_draws and drawless:
                no_draws.append(name)
            for score in scores:
                if score == "mutual_info" and drawless:
                    continue
                for k, p_ood in zip(sets, per_set[1:], strict=True):
                    found = ood_detection(per_set[0], p_ood, score)
                    rows.extend((name, k, score, metric, v) for metric, v in found.items())
    finally:
        bar.close()
    if no_draws:
        warnings.warn(
            f"methods {no_draws} give no per-draw probabilities; mutual_info skipped for them",
            stacklevel=2,
        )
    return pd.DataFrame(rows, columns=list(OOD_COLUMNS))
