"""Plots of `evaluate` tables and reliability data.

Every function builds a `matplotlib.figure.Figure` without pyplot (no global state,
nothing shown) and returns it; save it with `fig.savefig(path)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bnn_shift.shift.calibration import ReliabilityBins
from bnn_shift.shift.summary import check_table, pivot_metric, summarise

__all__ = [
    "plot_corruption_bars",
    "plot_metric_vs_severity",
    "plot_reliability",
    "plot_severity_grid",
]

_LABELS = {
    "accuracy": "accuracy",
    "nll": "NLL",
    "ece": "ECE (20 equal-mass bins)",
    "ece_equal_width": "ECE (20 equal-width bins)",
    "mce": "MCE (20 equal-mass bins)",
    "brier": "Brier score",
    "entropy": "predictive entropy (nats)",
    "mutual_info": "mutual information (nats)",
}


def _label(metric: str) -> str:
    return _LABELS.get(metric, metric)


def _figure_of(ax: Axes) -> Figure:
    return ax.figure if isinstance(ax.figure, Figure) else ax.figure.figure  # subfigure


def _metric_rows(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    check_table(table)
    sub = table[table["metric"] == metric]
    if sub.empty:
        raise ValueError(f"metric {metric!r} not in table; have {list(pd.unique(table['metric']))}")
    return sub


def _lines(ax: Axes, wide: pd.DataFrame) -> None:
    """One marked line per column of `wide` (index = severity)."""
    for method in wide.columns:
        col = wide[method].dropna()
        ax.plot(col.index.to_numpy(float), col.to_numpy(float), marker="o", label=str(method))


def plot_metric_vs_severity(
    table: pd.DataFrame,
    metric: str = "accuracy",
    shift: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Draw `metric` against severity, one marked line per method; return the figure.

    `shift` selects a shift by name. Without it a table of one shift plots that shift,
    and a table of several (a corruption benchmark) plots the mean over corruptions at
    each severity, with severity 0 the clean set. With `ax` the lines go on it.
    """
    sub = _metric_rows(table, metric)
    names = list(pd.unique(sub["shift"]))
    if shift is not None or len(names) == 1:
        wide = pivot_metric(table, metric, shift=shift)  # (severities, methods)
        xlabel = f"{shift or names[0]} severity"
    else:
        wide = summarise(sub).per_severity.loc[metric].T  # (severities, methods)
        n_corruptions = sub.loc[sub["severity"] > 0, "shift"].nunique()
        xlabel = f"severity (mean over {n_corruptions} corruptions; 0 = clean)"
    if ax is None:
        fig = Figure(figsize=(5.0, 3.5), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = _figure_of(ax)
    _lines(ax, wide)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_label(metric))
    ax.legend(title="method")
    ax.grid(alpha=0.3)
    return fig


def plot_severity_grid(table: pd.DataFrame, metric: str = "accuracy", ncols: int = 4) -> Figure:
    """One panel per corruption with `metric` against severity, one line per method.

    The clean value (mean of the severity-0 rows) starts every curve at severity 0. Panels
    share the y axis; the legend sits in the first panel.
    """
    sub = _metric_rows(table, metric)
    clean = sub[sub["severity"] == 0].groupby("method", sort=False)["value"].mean()
    corruptions = list(pd.unique(sub.loc[sub["severity"] > 0, "shift"]))
    if not corruptions:
        raise ValueError("the table has no rows with severity > 0 to plot")
    methods = list(pd.unique(sub["method"]))
    ncols = max(1, min(ncols, len(corruptions)))
    nrows = math.ceil(len(corruptions) / ncols)
    fig = Figure(figsize=(3.0 * ncols, 2.4 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, name in zip(axes, corruptions, strict=False):
        rows = sub[(sub["shift"] == name) & (sub["severity"] > 0)]
        wide = rows.pivot_table(index="severity", columns="method", values="value")
        for method in methods:
            if method in clean.index:
                wide.loc[0.0, method] = clean[method]
        wide = wide.sort_index()[[m for m in methods if m in wide.columns]]
        _lines(ax, wide)
        ax.set_title(name, fontsize="medium")
        ax.grid(alpha=0.3)
    for ax in axes[len(corruptions) :]:
        ax.set_axis_off()
    axes[0].legend(title="method", fontsize="small")
    fig.supxlabel("severity (0 = clean)")
    fig.supylabel(_label(metric))
    return fig


def plot_corruption_bars(
    table: pd.DataFrame,
    metric: str = "accuracy",
    severity: float | None = None,
    include_clean: bool = True,
) -> Figure:
    """Grouped bars: `metric` per corruption (x) and method (one colour each).

    Each bar is the mean over the corruption's positive severities, or its value at
    `severity` when given. `include_clean` adds a first group for the clean set
    (severity 0) when the table has one.
    """
    sub = _metric_rows(table, metric)
    shifted = sub[sub["severity"] > 0]
    if severity is not None:
        shifted = shifted[np.isclose(shifted["severity"], float(severity))]
        if shifted.empty:
            raise ValueError(f"no rows with severity {severity} for metric {metric!r}")
    if shifted.empty:
        raise ValueError("the table has no rows with severity > 0 to plot")
    methods = list(pd.unique(sub["method"]))
    wide = shifted.pivot_table(index="shift", columns="method", values="value")
    wide = wide.reindex(index=list(pd.unique(shifted["shift"])), columns=methods)
    clean = sub[sub["severity"] == 0]
    if include_clean and not clean.empty:
        clean_row = clean.groupby("method")["value"].mean().reindex(methods)
        wide = pd.concat([clean_row.to_frame("clean").T, wide])

    width = 0.8 / len(methods)
    x = np.arange(len(wide))
    fig = Figure(
        figsize=(max(5.0, 0.25 * len(wide) * len(methods) + 1.5), 3.8), layout="constrained"
    )
    ax = fig.add_subplot()
    for i, method in enumerate(methods):
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, wide[method], width, label=str(method))
    ax.set_xticks(x, list(wide.index), rotation=45, ha="right")
    ax.set_ylabel(_label(metric))
    where = "mean over severities" if severity is None else f"severity {severity:g}"
    ax.set_title(f"{_label(metric)} by corruption ({where})", fontsize="medium")
    ax.legend(title="method", fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    return fig


def plot_reliability(
    bins: ReliabilityBins | Mapping[str, ReliabilityBins], title: str | None = None
) -> Figure:
    """Reliability diagram: one panel per method, accuracy against confidence per bin.

    Equal-width bins are drawn as bars over their fixed edges (height = accuracy, a dot
    at the bin's mean confidence); equal-mass bins, whose ranges are uneven, as a marked
    line through (mean confidence, accuracy). Empty bins are left out. The dashed
    diagonal is perfect calibration; the panel title gives the ECE.
    """
    panels = {"": bins} if isinstance(bins, ReliabilityBins) else dict(bins)
    if not panels:
        raise ValueError("bins is empty; pass ReliabilityBins or {method: ReliabilityBins}")
    fig = Figure(figsize=(3.2 * len(panels), 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False).ravel()
    for ax, (name, b) in zip(axes, panels.items(), strict=True):
        full = b.count > 0
        conf, acc = b.confidence[full], b.accuracy[full]
        ax.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
        if b.binning == "equal_width":
            lower, upper = b.lower[full], b.upper[full]
            ax.bar(
                lower,
                acc,
                width=upper - lower,
                align="edge",
                alpha=0.6,
                edgecolor="k",
                linewidth=0.5,
                label="accuracy",
            )
            ax.plot(conf, acc, "o", markersize=3, color="k", label="mean confidence")
        else:
            ax.plot(conf, acc, "o-", markersize=4, label="accuracy per bin")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        heading = f"ECE {b.ece:.3f} ({b.binning.replace('_', '-')}, {len(b.count)} bins)"
        ax.set_title(f"{name}\n{heading}" if name else heading, fontsize="medium")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize="small", loc="upper left")
    if title:
        fig.suptitle(title)
    return fig
