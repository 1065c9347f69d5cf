"""Summaries of a tidy `evaluate` table.

Convention: rows with severity 0 are the clean (unshifted) test set; every row with a
positive severity is a shifted set, and its `shift` name is the corruption.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

__all__ = ["Summary", "check_table", "pivot_metric", "summarise"]

_COLUMNS = ("method", "shift", "severity", "metric", "value")


def check_table(table: pd.DataFrame) -> None:
    """Raise `ValueError` unless `table` has the tidy columns of `evaluate`."""
    missing = [c for c in _COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"table is missing columns {missing}; expected {list(_COLUMNS)}")


def _ordered(frame: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Reorder a `(metric, method)`-indexed frame by first appearance in `table`."""
    order = [
        (metric, method)
        for metric in pd.unique(table["metric"])
        for method in pd.unique(table["method"])
        if (metric, method) in frame.index
    ]
    return frame.reindex(pd.MultiIndex.from_tuples(order, names=["metric", "method"]))


@dataclass(frozen=True)
class Summary:
    """Three views of a table; methods and metrics in order of first appearance.

    overall: index `method`; columns `(metric, "clean" | "shifted")`: the clean value
        (mean of the severity-0 rows; NaN if none) and the mean over corruptions of each
        corruption's mean over its positive severities.
    per_severity: index `(metric, method)`; one column per severity (0 = clean); the mean
        over corruptions at that severity.
    per_corruption: index `(metric, method)`; one column per corruption; the mean over
        its positive severities.
    """

    overall: pd.DataFrame
    per_severity: pd.DataFrame
    per_corruption: pd.DataFrame

    def to_text(self, digits: int = 4) -> str:
        """The three tables as printable text, one after another, rounded to `digits`."""
        parts = [
            ("clean vs mean over corruptions", self.overall),
            ("mean over corruptions by severity", self.per_severity),
            ("mean over severities by corruption", self.per_corruption),
        ]
        if self.per_corruption.shape[1] <= 1:  # one corruption: the overall table says it all
            parts = parts[:2]
        return "\n\n".join(
            f"{title}:\n{frame.round(digits).to_string()}"
            for title, frame in parts
            if not frame.empty
        )


def summarise(table: pd.DataFrame, corruptions: Sequence[str] | None = None) -> Summary:
    """Per-method means over corruptions, per-severity and per-corruption tables.

    `corruptions` restricts the shifted rows to those shift names (e.g. the 15
    benchmark corruptions of CIFAR-10-C, leaving out the 4 extras); clean rows are
    always all severity-0 rows. Repeated rows (several seeds concatenated) are averaged.
    """
    check_table(table)
    if table.empty:
        raise ValueError("table is empty; nothing to summarise")
    if (table["severity"] < 0).any():
        raise ValueError("severities must be >= 0 (0 marks the clean test set)")
    clean = table[table["severity"] == 0]
    shifted = table[table["severity"] > 0]
    if corruptions is not None:
        unknown = sorted(set(corruptions) - set(shifted["shift"]))
        if unknown:
            have = list(pd.unique(shifted["shift"]))
            raise ValueError(f"corruptions {unknown} have no shifted rows; have {have}")
        shifted = shifted[shifted["shift"].isin(list(corruptions))]

    by = ["metric", "method"]
    per_corruption = shifted.pivot_table(index=by, columns="shift", values="value", aggfunc="mean")
    per_corruption = _ordered(per_corruption, table)
    per_corruption = per_corruption[list(pd.unique(shifted["shift"]))]
    per_corruption.columns.name = "shift"

    kept = pd.concat([clean, shifted])
    per_shift_sev = kept.groupby([*by, "severity", "shift"], sort=False)["value"].mean()
    per_severity = per_shift_sev.groupby(level=[0, 1, 2], sort=False).mean().unstack("severity")
    per_severity = _ordered(per_severity, table).sort_index(axis=1)

    clean_value = clean.groupby(by)["value"].mean()  # (metric, method) -> value
    shifted_value = per_corruption.mean(axis=1)  # mean over corruptions
    metrics = list(pd.unique(table["metric"]))
    methods = list(pd.unique(table["method"]))
    columns = pd.MultiIndex.from_tuples(
        [(m, c) for m in metrics for c in ("clean", "shifted")], names=["metric", "set"]
    )
    overall = pd.DataFrame(index=pd.Index(methods, name="method"), columns=columns, dtype=float)
    for (metric, method), value in clean_value.items():
        overall.loc[method, (metric, "clean")] = value
    for (metric, method), value in shifted_value.items():
        overall.loc[method, (metric, "shifted")] = value
    return Summary(overall, per_severity, per_corruption)


def pivot_metric(table: pd.DataFrame, metric: str, shift: str | None = None) -> pd.DataFrame:
    """One metric as a frame with index `severity` and one column per method.

    `shift` selects a shift by name; it may be omitted when the table holds only one.
    Repeated rows are averaged.
    """
    check_table(table)
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
