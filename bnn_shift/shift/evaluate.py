"""Run predictors over shifted copies of a dataset and collect a tidy metrics table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from tqdm.auto import tqdm

from bnn_shift.shift.metrics import METRICS
from bnn_shift.shift.noise import Shift

__all__ = ["COLUMNS", "Predictor", "evaluate", "pivot_metric", "summarise"]

COLUMNS = ("method", "shift", "severity", "metric", "value")
"""Columns of the tidy table returned by :func:`evaluate`, in order."""


@runtime_checkable
class Predictor(Protocol):
    """Anything that maps inputs ``(n, ...)`` to class probabilities ``(n, k)``.

    A posterior, a MAP point or an ensemble all qualify. Per-draw output
    ``(draws, n, k)`` is also accepted and averaged over draws.
    """

    def predict_proba(self, x: Any) -> Any: ...


def _predict(model: Predictor, x: np.ndarray, batch_size: int | None) -> np.ndarray:
    """Probabilities ``(n, k)`` as float64, predicted in chunks of ``batch_size`` rows."""

    def one(chunk: np.ndarray) -> np.ndarray:
        p = np.asarray(model.predict_proba(chunk), dtype=np.float64)
        return p.mean(axis=0) if p.ndim == 3 else p  # (draws, m, k) -> (m, k)

    n = x.shape[0]
    if batch_size is None or batch_size >= n:
        return one(x)
    return np.concatenate([one(x[i : i + batch_size]) for i in range(0, n, batch_size)])


def evaluate(
    methods: Mapping[str, Predictor],
    x: ArrayLike,
    y: ArrayLike,
    shifts: Sequence[Shift],
    metrics: Sequence[str] = ("accuracy", "nll", "ece", "brier"),
    batch_size: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Score every method on every shifted copy of ``(x, y)``.

    ``x`` is ``(n, ...)`` and ``y`` integer labels ``(n,)``. Each shift is applied once
    and its output reused for all methods. Metric names are keys of ``METRICS``
    (ECE uses its defaults: 20 equal-mass bins). Returns a tidy DataFrame with columns
    ``method, shift, severity, metric, value``: one row per
    (shift, method, metric), in that nesting order.
    """
    if not methods:
        raise ValueError("methods is empty; pass at least one {name: predictor}")
    for name, model in methods.items():
        if not isinstance(model, Predictor):
            raise TypeError(f"method {name!r} has no predict_proba(x) method")
    if not shifts:
        raise ValueError("shifts is empty; pass at least one Shift (e.g. noise_sweep())")
    keys = [(s.name, float(s.severity)) for s in shifts]
    if len(set(keys)) != len(keys):
        raise ValueError(f"shifts contain a repeated (name, severity) pair: {keys}")
    if isinstance(metrics, str):
        metrics = (metrics,)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metrics {unknown}; choose from {sorted(METRICS)}")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}")

    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 1 or y.ndim != 1:
        raise ValueError(f"expected x (n, ...) and y (n,); got {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
    if x.shape[0] == 0:
        raise ValueError("x and y are empty")

    rows: list[tuple[str, str, float, str, float]] = []
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
                probs = _predict(model, xs, batch_size)  # (n, k)
                for metric in metrics:
                    try:
                        value = METRICS[metric](probs, y)
                    except ValueError as err:
                        raise ValueError(
                            f"method {name!r} on shift {shift.name!r} "
                            f"(severity {shift.severity}): {err}"
                        ) from err
                    rows.append((name, shift.name, float(shift.severity), metric, value))
                bar.update()
    finally:
        bar.close()
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _check_table(table: pd.DataFrame) -> None:
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"table is missing columns {missing}; expected {list(COLUMNS)}")


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Wide view of an :func:`evaluate` table for printing.

    Rows are ``(shift, severity)``; columns are a ``(metric, method)`` MultiIndex, with
    metrics and methods in the order they first appear in ``table``. Repeated rows (for
    example several seeds concatenated) are averaged.
    """
    _check_table(table)
    wide = table.pivot_table(
        index=["shift", "severity"],
        columns=["metric", "method"],
        values="value",
        aggfunc="mean",
    )
    order = [
        (metric, method)
        for metric in pd.unique(table["metric"])
        for method in pd.unique(table["method"])
        if (metric, method) in wide.columns
    ]
    return wide.reindex(columns=pd.MultiIndex.from_tuples(order, names=["metric", "method"]))


def pivot_metric(table: pd.DataFrame, metric: str, shift: str | None = None) -> pd.DataFrame:
    """One metric as a frame with index ``severity`` and one column per method.

    ``shift`` selects a shift by name; it may be omitted when the table holds only one.
    Repeated rows are averaged.
    """
    _check_table(table)
    sub = table[table["metric"] == metric]
    if sub.empty:
        raise ValueError(f"metric {metric!r} not in table; have {list(pd.unique(table['metric']))}")
    names = list(pd.unique(sub["shift"]))
    if shift is None:
        if len(names) > 1:
            raise ValueError(f"table holds several shifts {names}; pass shift=...")
    else:
        sub = sub[sub["shift"] == shift]
        if sub.empty:
            raise ValueError(f"shift {shift!r} not in table; have {names}")
    wide = sub.pivot_table(index="severity", columns="method", values="value", aggfunc="mean")
    wide = wide[[m for m in pd.unique(sub["method"])]]
    wide.columns.name = "method"
    return wide.sort_index()
