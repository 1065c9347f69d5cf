"""Tests for bnn_shift.shift.plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from bnn_shift.shift import plot_metric_vs_severity


def _table() -> pd.DataFrame:
    rows = []
    for method, slope in [("hmc", -0.2), ("map", -0.1), ("ensemble", -0.05)]:
        for sev in [0.0, 1.0, 2.0, 3.0]:
            rows.append((method, "gaussian_noise", sev, "accuracy", 0.9 + slope * sev))
            rows.append((method, "gaussian_noise", sev, "nll", 0.3 - slope * sev))
    return pd.DataFrame(rows, columns=["method", "shift", "severity", "metric", "value"])


def test_one_line_per_method():
    fig = plot_metric_vs_severity(_table(), "accuracy")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["hmc", "map", "ensemble"]
    assert all(line.get_marker() == "o" for line in lines)
    np.testing.assert_allclose(lines[1].get_xdata(), [0, 1, 2, 3])
    np.testing.assert_allclose(lines[1].get_ydata(), [0.9, 0.8, 0.7, 0.6])
    assert ax.get_xlabel() == "gaussian_noise severity"
    assert ax.get_ylabel() == "accuracy"
    assert ax.get_legend() is not None
    fig.savefig(__import__("io").BytesIO(), format="png")


def test_draws_on_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    out = plot_metric_vs_severity(_table(), metric="nll", shift="gaussian_noise", ax=ax)
    assert out is fig
    assert len(ax.get_lines()) == 3
    assert ax.get_ylabel() == "NLL"


def test_unknown_shift():
    with pytest.raises(ValueError, match="shift 'fog'"):
        plot_metric_vs_severity(_table(), shift="fog")
