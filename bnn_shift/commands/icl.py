"""`bnn-shift icl`: in-context linear regression, error at the last position vs compute."""

from __future__ import annotations

import argparse

from bnn_shift.commands._common import common_options, ints, names
from bnn_shift.commands._options import add_config_options, given

DEFAULT_OUT = "runs/icl"


def add(sub: argparse._SubParsersAction) -> None:
    from bnn_shift.experiments.icl import VARIANTS, ICLConfig

    p = sub.add_parser(
        "icl",
        parents=[common_options()],
        help="in-context linear regression: standard vs BTT vs bilinear-MLR attention",
        description="Train an in-context regression transformer per (d_input, variant, width) "
        "on fresh random linear tasks, score the squared error at every position of a fixed "
        "evaluation set, and write results.csv (last-position error, non-embedding FLOPs), "
        "curves.csv, icl.png (error vs training compute) and curves.png to --out. "
        f"Variants: {', '.join(VARIANTS)}. Defaults are CPU-sized.",
    )
    fields = add_config_options(
        p,
        ICLConfig(),
        [
            ("--d-inputs", "d_inputs", ints, "input dimensions, comma-separated"),
            ("--widths", "widths", ints, "model widths d_model, comma-separated"),
            ("--variants", "variants", names, "attention variants, comma-separated"),
            ("--n-heads", "n_heads", int, "heads (all variants but standard-1head)"),
            ("--depth", "depth", int, "transformer blocks"),
            ("--points-per-dim", "points_per_dim", int, "in-context examples per input dim"),
            ("--steps", "steps", int, "training steps per model"),
            ("--batch-size", "batch_size", int, "sequences per step"),
            ("--learning-rate", "learning_rate", float, "AdamW (base) learning rate"),
            ("--optimizer", "optimizer", str, "mup (per-tensor muP rates) or adamw (one rate)"),
            ("--warmup", "warmup", int, "linear warmup steps (then cosine to lr/10)"),
            ("--curriculum", "curriculum", float, "share of steps growing active dims 4 -> d"),
            ("--n-eval", "n_eval", int, "evaluation sequences"),
            ("--seed", "seed", int, "random seed of inits and tasks"),
        ],
    )
    p.add_argument("--out", default=DEFAULT_OUT, help="output directory [%(default)s]")
    p.set_defaults(run=run, config_fields=fields)


def run(args: argparse.Namespace) -> None:
    from bnn_shift.experiments.icl import ICLConfig, run_icl

    result = run_icl(ICLConfig(**given(args)), out_dir=args.out, progress=not args.quiet)
    columns = ["d_input", "variant", "d_model", "n_heads", "train_compute", "last_error"]
    print(result.table[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nwrote {args.out}/results.csv, curves.csv, icl.png, curves.png")
