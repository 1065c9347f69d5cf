"""`bnn-shift evaluate`: score saved posteriors under a noise sweep or a corruption benchmark."""

from __future__ import annotations

import argparse

from bnn_shift.commands._common import common_options, floats, names


def _n_test(text: str) -> int | str:
    return "all" if text.lower() in ("all", "none") else int(text)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        parents=[common_options()],
        help="score saved posteriors under input noise or MNIST-C / CIFAR-10-C",
        description="Load every posterior-<method>.nc of each compare-priors RUN_DIR, rebuild "
        "its test set from config.json, and score each method on the clean and shifted test "
        "sets: accuracy, NLL, ECE and MCE (20 equal-mass bins), Brier, predictive entropy and "
        "mutual information. Writes metrics.csv (tidy), summary.csv (clean vs mean over "
        "corruptions), per_severity.csv, per_corruption.csv, settings.json and PNG plots "
        "(metric vs severity, per-corruption bars, reliability diagrams) to --out, and prints "
        "the summary.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="compare-priors run directories")
    p.add_argument(
        "--shifts",
        choices=("noise", "mnist-c", "cifar10-c"),
        default="noise",
        help="noise: Gaussian noise in normalised pixel units; mnist-c / cifar10-c: the "
        "corruption benchmark [%(default)s]",
    )
    p.add_argument(
        "--corruptions",
        type=names,
        default=None,
        help="comma-separated corruption names (mnist-c / cifar10-c) [all]",
    )
    p.add_argument(
        "--severities",
        type=floats,
        default=None,
        help="noise stds, or corruption severities 1-5 [noise: 0,0.5,...,3; benchmark default]",
    )
    p.add_argument(
        "--n-test",
        type=_n_test,
        default=None,
        help="stratified test subset size, or 'all' [the run's own]",
    )
    p.add_argument("--data-dir", default=None, help="dataset directory, if not the run's")
    p.add_argument(
        "--cache",
        action="store_true",
        help="mnist-c / cifar10-c: read corrupted test images from the on-disk cache "
        "(written on first use under the data home) instead of corrupting in memory",
    )
    p.add_argument("--batch-size", type=int, default=1000, help="rows per prediction call")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise / corruptions [0]")
    p.add_argument("--out", default=None, help="output directory [RUN_DIR/evaluate-SHIFTS]")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from bnn_shift.experiments.evaluate_runs import evaluate_runs, write_evaluation

    result = evaluate_runs(
        args.runs,
        shifts=args.shifts,
        corruptions=args.corruptions,
        severities=args.severities,
        n_test=args.n_test,
        seed=args.seed,
        data_dir=args.data_dir,
        cache=args.cache,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    out = Path(args.out) if args.out else Path(args.runs[0]) / f"evaluate-{args.shifts}"
    written = write_evaluation(result, out)
    print(f"\ndataset: {result.dataset} (test {result.n_test}), shifts: {args.shifts}")
    print(result.summary.to_text())
    print(f"\nwrote {', '.join(p.name for p in written)} to {out}")
