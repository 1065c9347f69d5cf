"""`bnn-shift lm`: character LM, standard vs sliding-window vs global+window vs MLR attention."""

from __future__ import annotations

import argparse

from bnn_shift.commands._common import common_options, ints, names
from bnn_shift.commands._options import add_config_options, given

DEFAULT_OUT = "runs/lm"


def add(sub: argparse._SubParsersAction) -> None:
    from bnn_shift.experiments.lm import VARIANTS, LMConfig

    p = sub.add_parser(
        "lm",
        parents=[common_options()],
        help="character language model: attention structures at equal size and tokens",
        description="Train one causal character LM per attention structure on the same "
        "batches of a text file (default tinyshakespeare) and write results.csv (validation "
        "bits per character, FLOPs per token), curves.csv and lm.png to --out. "
        f"Variants: {', '.join(VARIANTS)}. Defaults are CPU-sized.",
    )
    fields = add_config_options(
        p,
        LMConfig(),
        [
            ("--path", "path", str, "UTF-8 text file (default: tinyshakespeare)"),
            ("--variants", "variants", names, "attention structures, comma-separated"),
            ("--d-model", "d_model", int, "model width"),
            ("--n-heads", "n_heads", int, "attention heads"),
            ("--depth", "depth", int, "transformer blocks"),
            ("--context-length", "context_length", int, "characters per sequence T"),
            ("--window", "window", int, "sliding window (default T/2)"),
            ("--global-dims", "global_dims", int, "global+window: global head dims (default half)"),
            ("--mlr-ranks", "mlr_ranks", ints, "MLR per-level ranks, summing to the head dim"),
            ("--steps", "steps", int, "training steps per variant"),
            ("--batch-size", "batch_size", int, "sequences per step"),
            ("--learning-rate", "learning_rate", float, "AdamW (base) learning rate"),
            ("--optimizer", "optimizer", str, "mup (per-tensor muP rates) or adamw (one rate)"),
            ("--warmup", "warmup", int, "linear warmup steps (then constant)"),
            ("--n-eval-windows", "n_eval_windows", int, "validation windows of T characters"),
            ("--eval-every", "eval_every", int, "steps between validation losses"),
            ("--seed", "seed", int, "random seed of inits and batches"),
        ],
    )
    p.add_argument("--out", default=DEFAULT_OUT, help="output directory [%(default)s]")
    p.set_defaults(run=run, config_fields=fields)


def run(args: argparse.Namespace) -> None:
    from bnn_shift.experiments.lm import LMConfig, run_lm

    result = run_lm(LMConfig(**given(args)), out_dir=args.out, progress=not args.quiet)
    print(f"corpus: {result.corpus} (vocabulary {result.vocab_size})")
    columns = ["variant", "val_bpc", "train_bpc", "flops_per_token", "seconds"]
    print(result.table[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nwrote {args.out}/results.csv, curves.csv, lm.png")
