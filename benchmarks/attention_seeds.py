"""The structured-attention experiments over several seeds: mean, spread and per-seed outcomes.

Runs `bnn-shift <experiment> --seed s --out OUT/seed-s [flags]` for every seed whose results.csv
is not there yet (so an interrupted sweep resumes seed by seed), then pools the seeds'
results.csv into OUT/summary.csv and prints it: per configuration the
number of seeds, mean ± standard deviation, min and max of each metric; for in-context
regression also how many seeds left the predict-zero plateau (last-position error below 90% of
predicting zero).

    python benchmarks/attention_seeds.py icl --seeds 0,1,2 --out runs/seeds-icl-16 -- \\
        --d-inputs 16 --widths 32 --steps 2000 --warmup 100
    python benchmarks/attention_seeds.py lm --seeds 0,1,2 --out runs/seeds-lm -- --steps 1500
    python benchmarks/attention_seeds.py forecast --seeds 0,1,2 --out runs/seeds-etth1 -- \\
        --horizons 96,192,336,720 --steps 2000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

# experiment -> (columns naming a configuration, metrics pooled over seeds)
EXPERIMENTS = {
    "icl": (["d_input", "variant", "d_model"], ["last_error", "zero_predictor_error"]),
    "lm": (["variant"], ["val_bpc", "train_bpc"]),
    "forecast": (["variant", "horizon"], ["mse", "mae"]),
}
PLATEAU = 0.9  # a seed left the predict-zero plateau when its error is below 90% of zero's


def run_seed(experiment: str, seed: int, out: Path, flags: list[str]) -> Path:
    """One seed's run (skipped when its results.csv exists) -> that results.csv."""
    results = out / f"seed-{seed}" / "results.csv"
    if not results.is_file():
        command = [sys.executable, "-m", "bnn_shift.cli", experiment, "--quiet"]
        command += ["--seed", str(seed), "--out", str(results.parent), *flags]
        print("running:", " ".join(command), flush=True)
        subprocess.run(command, check=True)
    return results


def pool_seeds(experiment: str, tables: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """The seeds' result tables -> one row per configuration: seeds, and mean / sd / min / max
    of each metric (sd with n - 1; NaN for one seed); icl also counts seeds off the plateau."""
    keys, metrics = EXPERIMENTS[experiment]
    pooled = pd.concat([t.assign(seed=s) for s, t in tables.items()], ignore_index=True)
    if experiment == "icl":
        pooled["left_plateau"] = pooled.last_error < PLATEAU * pooled.zero_predictor_error
    groups = pooled.groupby(keys, sort=False)
    summary = groups[metrics].agg(["mean", "std", "min", "max"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    summary.insert(0, "seeds", groups.size())
    if experiment == "icl":
        summary.insert(1, "seeds_left_plateau", groups.left_plateau.sum())
    return summary.reset_index()


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Command line -> (this script's options, the flags after `--` for bnn-shift <experiment>)."""
    # split by hand: argparse gives an optional positional list nothing after a `--`
    cut = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        usage="%(prog)s {icl,lm,forecast} [--seeds S] --out OUT [-- FLAGS of bnn-shift <exp>]",
    )
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv[:cut]), argv[cut + 1 :]


def main() -> None:
    args, flags = parse_args(sys.argv[1:])
    seeds = [int(s) for s in args.seeds.split(",")]
    tables = {s: pd.read_csv(run_seed(args.experiment, s, args.out, flags)) for s in seeds}
    summary = pool_seeds(args.experiment, tables)
    summary.to_csv(args.out / "summary.csv", index=False)
    print(summary.to_string(index=False, float_format="{:.4g}".format))


if __name__ == "__main__":
    main()
