"""Long-horizon forecasting on ETT-format series: standard vs MLR attention at horizons
96/192/336 (Kuang et al. 2025, arXiv version; REFERENCE §2.8).

One `SeriesForecaster` per (variant, horizon), trained on random minibatches of the train
windows (input length L, the standard 12/4/4-month split, every variable standardised with
train statistics, multivariate in and out) and scored on every test window by MSE and MAE in
standardised units, the long-horizon literature's convention. A persistence forecast (repeat
the window's last value) is reported alongside as a floor any model should beat.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from bnn_shift.data import SeriesData, load_ett
from bnn_shift.experiments.training import (
    check_heads,
    check_names,
    check_optimizer,
    fit,
    train_settings,
)
from bnn_shift.models import SeriesForecaster, forward_flops_per_token
from bnn_shift.models.transformer import matrix_params

VARIANTS = ("standard", "mlr")


@dataclass
class ForecastConfig:
    """Every setting of a `forecast` run (CPU-sized defaults)."""

    path: str | None = None  # any ETT-format CSV; default the shared ETTh1.csv (see load_ett)
    horizons: tuple[int, ...] = (96, 192, 336)
    variants: tuple[str, ...] = VARIANTS
    input_length: int = 96
    patch: int = 4  # steps per token (input and horizon)
    d_model: int = 32
    n_heads: int = 2  # head dim 16
    depth: int = 2
    mlr_ranks: tuple[int, ...] = (8, 4, 4)  # per-level ranks, summing to the head dim
    features: str = "M"  # M: all variables in and out; S: the target only
    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "mup"  # "mup": per-tensor muP rates; "adamw": one rate for every tensor
    warmup: int = 30
    seed: int = 0

    def __post_init__(self):
        check_names(self.variants, VARIANTS, "variants")
        check_optimizer(self.optimizer)
        if self.features not in ("M", "S"):
            raise ValueError(f"features must be 'M' or 'S', got {self.features!r}")
        check_heads(self.d_model, self.n_heads, self.mlr_ranks if "mlr" in self.variants else None)


def build_forecaster(config: ForecastConfig, variant: str, horizon: int, d: int):
    """A `SeriesForecaster` of `variant` for d variables in and out."""
    if variant == "standard":
        structure, options = "full", {}
    elif variant == "mlr":
        structure, options = "mlr", {"ranks": config.mlr_ranks}
    else:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return SeriesForecaster(
        config.input_length,
        horizon,
        d,
        d_model=config.d_model,
        n_heads=config.n_heads,
        depth=config.depth,
        key=jax.random.key(config.seed),
        patch=config.patch,
        structure=structure,
        structure_options=options,
    )


def _loss(model: SeriesForecaster, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    x, y = batch  # (b, L, d), (b, H, d)
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


def forecast_errors(predict, x: np.ndarray, y: np.ndarray, chunk: int = 256) -> dict[str, float]:
    """MSE and MAE of predict(x chunk) against y over all windows."""
    sq, ab = 0.0, 0.0
    for i in range(0, len(x), chunk):
        err = np.asarray(predict(x[i : i + chunk]), np.float64) - y[i : i + chunk]
        sq += float(np.sum(err**2))
        ab += float(np.sum(np.abs(err)))
    return {"mse": sq / y.size, "mae": ab / y.size}


def persistence(x: np.ndarray, horizon: int) -> np.ndarray:
    """(b, L, d) -> (b, H, d): the last observed value, repeated."""
    return np.repeat(x[:, -1:, :], horizon, axis=1)


def run_one(
    config: ForecastConfig, data: SeriesData, variant: str, horizon: int, progress: bool
) -> dict:
    """Train one (variant, horizon) and score it on the test windows."""
    x_train, y_train = data.windows("train", config.input_length, horizon, features=config.features)
    x_test, y_test = data.windows("test", config.input_length, horizon, features=config.features)
    model = build_forecaster(config, variant, horizon, x_train.shape[-1])
    settings = train_settings(config, final_lr_ratio=0.1)

    def batch(step: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([config.seed, horizon, step])
        index = rng.integers(0, len(x_train), config.batch_size)
        return x_train[index], y_train[index]

    trained = fit(
        model,
        _loss,
        batch,
        settings,
        key=jax.random.key(config.seed + 1),
        progress=progress,
        desc=f"forecast {variant} H={horizon}",
    )
    predict = jax.jit(jax.vmap(trained.model))
    errors = forecast_errors(lambda x: predict(jnp.asarray(x)), x_test, y_test)
    per_token = forward_flops_per_token(trained.model.transformer, trained.model.seq_len)
    return {
        "variant": variant,
        "horizon": horizon,
        **errors,
        "final_train_mse": float(np.mean(trained.losses[-20:])),
        "non_embedding_params": matrix_params(trained.model.transformer),
        "flops_per_token": per_token,
        "seconds": trained.seconds,
    }


@dataclass
class ForecastResult:
    config: ForecastConfig
    series: str
    table: pd.DataFrame  # variant, horizon, mse, mae, ... (persistence rows included)


def run_forecast(
    config: ForecastConfig, out_dir: str | Path | None = None, progress: bool = True
) -> ForecastResult:
    """Every (horizon, variant) plus persistence; tables and a plot to out_dir."""
    data = load_ett(config.path)
    rows = []
    grid = [(h, v) for h in config.horizons for v in config.variants]
    for horizon, variant in tqdm(grid, desc="forecast runs", disable=not progress):
        rows.append(run_one(config, data, variant, horizon, progress))
    for horizon in config.horizons:
        x, y = data.windows("test", config.input_length, horizon, features=config.features)
        errors = forecast_errors(functools.partial(persistence, horizon=horizon), x, y)
        rows.append({"variant": "persistence", "horizon": horizon, **errors})
    table = pd.DataFrame(rows).sort_values(["horizon", "variant"], ignore_index=True)
    result = ForecastResult(config, data.name, table)
    if out_dir is not None:
        write_results(result, Path(out_dir))
    return result


def plot_forecast(table: pd.DataFrame, series: str) -> Figure:
    """Test MSE and MAE vs horizon, one line per variant."""
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    for ax, metric in zip(fig.subplots(1, 2), ("mse", "mae")):
        for variant, rows in table.groupby("variant", sort=False):
            ax.plot(rows.horizon, rows[metric], "o-", label=variant)
        ax.set_xlabel("horizon (steps)")
        ax.set_ylabel(f"test {metric.upper()} (standardised)")
        ax.set_title(f"{series}: {metric.upper()}")
    fig.axes[0].legend(fontsize=8)
    return fig


def write_results(result: ForecastResult, out: Path) -> None:
    """results.csv, forecast.png, settings.json."""
    out.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(out / "results.csv", index=False)
    plot_forecast(result.table, result.series).savefig(out / "forecast.png", dpi=120)
    settings = {**dataclasses.asdict(result.config), "resolved": {"series": result.series}}
    (out / "settings.json").write_text(json.dumps(settings, indent=2))
