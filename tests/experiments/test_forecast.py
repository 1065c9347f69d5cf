"""Tests for bnn_shift.experiments.forecast on a synthetic ETT-format series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bnn_shift.data import load_ett
from bnn_shift.experiments.forecast import (
    ForecastConfig,
    forecast_errors,
    persistence,
    run_forecast,
)

N_ROWS = 14_400  # the 12/4/4-month hourly split


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory) -> Path:
    """Two variables: a daily sine plus noise, and a slow drift ("OT")."""
    rng = np.random.default_rng(0)
    t = np.arange(N_ROWS)
    daily = np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(N_ROWS)
    drift = np.cumsum(rng.standard_normal(N_ROWS)) * 0.05
    stamps = np.datetime64("2020-01-01T00:00:00") + t.astype("timedelta64[h]")
    lines = ["date,DAILY,OT"] + [
        f"{str(s).replace('T', ' ')},{a:.6f},{b:.6f}" for s, a, b in zip(stamps, daily, drift)
    ]
    path = tmp_path_factory.mktemp("ett") / "series.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_persistence_and_errors():
    x = np.arange(12.0).reshape(2, 3, 2)  # (b, L, d)
    forecast = persistence(x, 4)
    assert forecast.shape == (2, 4, 2)
    np.testing.assert_array_equal(forecast[1, :, 0], 10.0)
    y = forecast + np.array([1.0, -3.0])
    errors = forecast_errors(lambda xs: persistence(xs, 4), x, y, chunk=1)
    assert errors == {"mse": pytest.approx(5.0), "mae": pytest.approx(2.0)}


def test_config_checks():
    with pytest.raises(ValueError, match="must sum to the head dim"):
        ForecastConfig(d_model=32, n_heads=2, mlr_ranks=(8, 4))
    with pytest.raises(ValueError, match="unknown variants"):
        ForecastConfig(variants=("lstm",))


def test_tiny_run_end_to_end(series_csv, tmp_path):
    config = ForecastConfig(
        path=str(series_csv),
        horizons=(16,),
        variants=("mlr",),
        input_length=16,
        patch=4,
        d_model=8,
        n_heads=2,
        depth=1,
        mlr_ranks=(2, 1, 1),
        steps=40,
        batch_size=16,
        learning_rate=3e-3,
        warmup=5,
    )
    result = run_forecast(config, out_dir=tmp_path, progress=False)
    table = pd.read_csv(tmp_path / "results.csv")
    assert sorted(set(table.variant)) == ["mlr", "persistence"]
    assert set(table.horizon) == {16} and len(table) == 2
    assert (tmp_path / "forecast.png").stat().st_size > 0
    # the daily sine is predictable: trained models beat repeating the last value
    by = table.set_index(["variant", "horizon"]).mse
    assert by["mlr", 16] < by["persistence", 16], table
    x, y = load_ett(series_csv).windows("test", 16, 16)
    assert result.table.query("variant == 'persistence'").mse.item() == (
        pytest.approx(np.mean((persistence(x, 16) - y) ** 2), rel=1e-6)
    )
