"""Plots of an :func:`~bnn_shift.shift.evaluate.evaluate` table."""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bnn_shift.shift.evaluate import pivot_metric

__all__ = ["plot_metric_vs_severity"]

_LABELS = {"accuracy": "accuracy", "nll": "NLL", "ece": "ECE", "brier": "Brier score"}


def plot_metric_vs_severity(
    table: pd.DataFrame,
    metric: str = "accuracy",
    shift: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Draw ``metric`` against severity, one marked line per method; return the figure.

    ``shift`` selects a shift by name (optional when the table holds only one). With
    ``ax=None`` a new figure is made without pyplot, so no global state is touched and
    nothing is shown; otherwise the lines go on ``ax`` and its figure is returned.
    """
    wide = pivot_metric(table, metric, shift=shift)  # (severities, methods)
    if ax is None:
        fig = Figure(figsize=(5.0, 3.5), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure if isinstance(ax.figure, Figure) else ax.figure.figure  # subfigure
    for method in wide.columns:
        col = wide[method].dropna()
        ax.plot(col.index.to_numpy(), col.to_numpy(), marker="o", label=str(method))
    if shift is None:
        shift = str(table.loc[table["metric"] == metric, "shift"].iloc[0])
    ax.set_xlabel(f"{shift} severity")
    ax.set_ylabel(_LABELS.get(metric, metric))
    ax.legend(title="method")
    ax.grid(alpha=0.3)
    return fig
