"""`bnn-shift forecast`: ETT forecasting, standard vs MLR attention at several horizons."""

from __future__ import annotations

import argparse

from bnn_shift.commands._common import common_options, ints, names
from bnn_shift.commands._options import add_config_options, given

DEFAULT_OUT = "runs/forecast"


def add(sub: argparse._SubParsersAction) -> None:
    from bnn_shift.experiments.forecast import VARIANTS, ForecastConfig

    p = sub.add_parser(
        "forecast",
        parents=[common_options()],
        help="ETT time-series forecasting: standard vs MLR attention, MSE/MAE per horizon",
        description="Train one forecaster per (horizon, variant) on the train split of an "
        "ETT-format CSV (default ETTh1), score MSE and MAE (standardised units) on every test "
        "window next to a persistence forecast, and write results.csv and forecast.png to "
        f"--out. Variants: {', '.join(VARIANTS)}. Defaults are CPU-sized.",
    )
    fields = add_config_options(
        p,
        ForecastConfig(),
        [
            ("--path", "path", str, "ETT-format CSV (default: the shared ETTh1.csv)"),
            ("--horizons", "horizons", ints, "forecast horizons, comma-separated"),
            ("--variants", "variants", names, "attention variants, comma-separated"),
            ("--input-length", "input_length", int, "input window L"),
            ("--patch", "patch", int, "time steps per token"),
            ("--d-model", "d_model", int, "model width"),
            ("--n-heads", "n_heads", int, "attention heads"),
            ("--depth", "depth", int, "transformer blocks"),
            ("--mlr-ranks", "mlr_ranks", ints, "MLR per-level ranks, summing to the head dim"),
            ("--features", "features", str, "M (all variables) or S (the target only)"),
            ("--steps", "steps", int, "training steps per model"),
            ("--batch-size", "batch_size", int, "windows per step"),
            ("--learning-rate", "learning_rate", float, "AdamW (base) learning rate"),
            ("--optimizer", "optimizer", str, "mup (per-tensor muP rates) or adamw (one rate)"),
            ("--warmup", "warmup", int, "linear warmup steps (then cosine to lr/10)"),
            ("--seed", "seed", int, "random seed of inits and batches"),
        ],
    )
    p.add_argument("--out", default=DEFAULT_OUT, help="output directory [%(default)s]")
    p.set_defaults(run=run, config_fields=fields)


def run(args: argparse.Namespace) -> None:
    from bnn_shift.experiments.forecast import ForecastConfig, run_forecast

    result = run_forecast(ForecastConfig(**given(args)), out_dir=args.out, progress=not args.quiet)
    print(f"series: {result.series}")
    columns = ["horizon", "variant", "mse", "mae"]
    print(result.table[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\nwrote {args.out}/results.csv, forecast.png")
