"""Tests for bnn_shift.shift.plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from bnn_shift.shift import (
    plot_corruption_bars,
    plot_metric_vs_severity,
    plot_reliability,
    plot_severity_grid,
    reliability_bins,
)


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


def _benchmark_table() -> pd.DataFrame:
    """Clean + 3 corruptions x 2 severities for 2 methods, accuracy and ECE."""
    rows = []
    for method, base in [("hmc", 0.9), ("map", 0.8)]:
        for metric in ("accuracy", "ece"):
            rows.append((method, "clean", 0.0, metric, base))
            for i, name in enumerate(["fog", "blur", "snow"]):
                for sev in (1.0, 2.0):
                    rows.append((method, name, sev, metric, base - 0.1 * sev - 0.01 * i))
    return pd.DataFrame(rows, columns=["method", "shift", "severity", "metric", "value"])


def test_severity_curve_averages_over_corruptions():
    fig = plot_metric_vs_severity(_benchmark_table(), "accuracy")
    (ax,) = fig.axes
    hmc, _ = ax.get_lines()
    np.testing.assert_allclose(hmc.get_xdata(), [0, 1, 2])
    # Severity 1: mean of 0.8, 0.79, 0.78; severity 0 is the clean value.
    np.testing.assert_allclose(hmc.get_ydata(), [0.9, 0.79, 0.69])
    assert "mean over 3 corruptions" in ax.get_xlabel()
    # One named corruption still works.
    one = plot_metric_vs_severity(_benchmark_table(), "ece", shift="blur")
    np.testing.assert_allclose(one.axes[0].get_lines()[1].get_ydata(), [0.69, 0.59])


def test_severity_grid_one_panel_per_corruption():
    fig = plot_severity_grid(_benchmark_table(), "accuracy", ncols=2)
    assert len(fig.axes) == 4  # 2 x 2 grid for 3 corruptions, the 4th hidden
    assert [ax.get_title() for ax in fig.axes[:3]] == ["fog", "blur", "snow"]
    assert not fig.axes[3].axison
    for ax in fig.axes[:3]:
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["hmc", "map"]
        np.testing.assert_allclose(lines[0].get_xdata(), [0, 1, 2])  # clean prepended
        assert lines[0].get_ydata()[0] == pytest.approx(0.9)
    fig.savefig(__import__("io").BytesIO(), format="png")


def test_corruption_bars():
    fig = plot_corruption_bars(_benchmark_table(), "accuracy")
    (ax,) = fig.axes
    assert len(ax.patches) == 4 * 2  # (clean + 3 corruptions) x 2 methods
    assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "fog", "blur", "snow"]
    heights = [p.get_height() for p in ax.patches]
    # First method's bars: clean 0.9, then mean over severities 1 and 2 per corruption.
    np.testing.assert_allclose(heights[:4], [0.9, 0.75, 0.74, 0.73])
    at2 = plot_corruption_bars(_benchmark_table(), "ece", severity=2, include_clean=False)
    np.testing.assert_allclose([p.get_height() for p in at2.axes[0].patches][:3], [0.7, 0.69, 0.68])
    with pytest.raises(ValueError, match="severity 4"):
        plot_corruption_bars(_benchmark_table(), severity=4)


def test_reliability_diagram():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=200)
    labels = rng.integers(0, 3, size=200)
    mass = reliability_bins(probs, labels, n_bins=10)
    width = reliability_bins(probs, labels, n_bins=10, binning="equal_width")
    fig = plot_reliability({"a": mass, "b": width}, title="test")
    ax_a, ax_b = fig.axes
    # Equal mass: the diagonal and one marked line through the 10 bins.
    assert len(ax_a.get_lines()) == 2 and len(ax_a.patches) == 0
    np.testing.assert_allclose(ax_a.get_lines()[1].get_ydata(), mass.accuracy)
    # Equal width: one bar per non-empty bin.
    assert len(ax_b.patches) == int((width.count > 0).sum())
    assert f"ECE {width.ece:.3f}" in ax_b.get_title()
    single = plot_reliability(mass)
    assert len(single.axes) == 1
    fig.savefig(__import__("io").BytesIO(), format="png")
    with pytest.raises(ValueError, match="empty"):
        plot_reliability({})
