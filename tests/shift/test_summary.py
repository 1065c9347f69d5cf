"""Tests for bnn_shift.shift.summary on hand-built tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bnn_shift.shift import COLUMNS, summarise


def _table() -> pd.DataFrame:
    rows = [
        # method, shift, severity, metric, value
        ("map", "clean", 0.0, "accuracy", 0.90),
        ("map", "fog", 1.0, "accuracy", 0.80),
        ("map", "fog", 2.0, "accuracy", 0.60),
        ("map", "blur", 1.0, "accuracy", 0.70),  # blur has one severity only
        ("hmc", "clean", 0.0, "accuracy", 0.95),
        ("hmc", "fog", 1.0, "accuracy", 0.70),
        ("hmc", "fog", 2.0, "accuracy", 0.30),
        ("hmc", "blur", 1.0, "accuracy", 0.80),
        ("map", "clean", 0.0, "nll", 0.30),
        ("map", "fog", 1.0, "nll", 0.50),
        ("map", "fog", 2.0, "nll", 0.90),
        ("map", "blur", 1.0, "nll", 0.40),
        ("hmc", "clean", 0.0, "nll", 0.20),
        ("hmc", "fog", 1.0, "nll", 0.60),
        ("hmc", "fog", 2.0, "nll", 1.20),
        ("hmc", "blur", 1.0, "nll", 0.50),
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_overall_clean_and_mean_over_corruptions():
    s = summarise(_table())
    assert list(s.overall.index) == ["map", "hmc"]
    assert list(s.overall.columns) == [
        ("accuracy", "clean"),
        ("accuracy", "shifted"),
        ("nll", "clean"),
        ("nll", "shifted"),
    ]
    # Each corruption counts once: map accuracy = mean(mean(0.8, 0.6), 0.7) = 0.7.
    assert s.overall.loc["map", ("accuracy", "clean")] == pytest.approx(0.90)
    assert s.overall.loc["map", ("accuracy", "shifted")] == pytest.approx(0.70)
    assert s.overall.loc["hmc", ("accuracy", "shifted")] == pytest.approx((0.5 + 0.8) / 2)
    assert s.overall.loc["hmc", ("nll", "shifted")] == pytest.approx((0.9 + 0.5) / 2)


def test_per_severity_and_per_corruption():
    s = summarise(_table())
    assert list(s.per_severity.columns) == [0.0, 1.0, 2.0]
    acc = s.per_severity.loc["accuracy"]
    assert list(acc.index) == ["map", "hmc"]
    np.testing.assert_allclose(acc.loc["map"], [0.90, (0.8 + 0.7) / 2, 0.60])
    np.testing.assert_allclose(acc.loc["hmc"], [0.95, (0.7 + 0.8) / 2, 0.30])
    assert list(s.per_corruption.columns) == ["fog", "blur"]
    assert s.per_corruption.loc[("nll", "map"), "fog"] == pytest.approx(0.70)
    assert s.per_corruption.loc[("accuracy", "hmc"), "blur"] == pytest.approx(0.80)
    text = s.to_text()
    assert "clean vs mean over corruptions" in text and "by corruption" in text


def test_corruption_subset_repeats_and_no_clean():
    table = _table()
    s = summarise(table, corruptions=["fog"])
    assert s.overall.loc["map", ("accuracy", "shifted")] == pytest.approx(0.70)
    assert list(s.per_corruption.columns) == ["fog"]
    # Two seeds concatenated average out; with no severity-0 rows clean is NaN.
    doubled = pd.concat([table, table.assign(value=table["value"] + 0.02)])
    assert summarise(doubled).overall.loc["map", ("accuracy", "clean")] == pytest.approx(0.91)
    no_clean = summarise(table[table["severity"] > 0])
    assert np.isnan(no_clean.overall.loc["hmc", ("nll", "clean")])
    assert no_clean.overall.loc["hmc", ("nll", "shifted")] == pytest.approx(0.70)
    # Only clean rows: no corruption columns, NaN shifted means.
    clean_only = summarise(table[table["severity"] == 0])
    assert clean_only.per_corruption.empty
    assert clean_only.overall["accuracy"]["shifted"].isna().all()
    assert list(clean_only.per_severity.columns) == [0.0]


def test_errors():
    with pytest.raises(ValueError, match="missing columns"):
        summarise(_table().drop(columns="metric"))
    with pytest.raises(ValueError, match=r"corruptions \['snow'\]"):
        summarise(_table(), corruptions=["snow"])
    with pytest.raises(ValueError, match="empty"):
        summarise(_table().iloc[:0])
    with pytest.raises(ValueError, match=">= 0"):
        summarise(_table().assign(severity=-1.0))
