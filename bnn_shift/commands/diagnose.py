"""`bnn-shift diagnose`: sampler health and R-hat/ESS of saved posteriors."""

from __future__ import annotations

import argparse

from bnn_shift.commands._common import common_options


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diagnose",
        parents=[common_options()],
        help="sampler health and R-hat/ESS of saved posteriors",
        description="Print acceptance, divergences and ArviZ R-hat/ESS of the function-space "
        "trace (train log-likelihood, test log-predictive and accuracy) of each saved posterior "
        "(*.nc) in RUN_DIR, or of the given .nc files; with --reference, also each model "
        "average's top-1 agreement and total variation against a reference posterior's, beside "
        "the reference's own run-vs-run floor.",
    )
    p.add_argument("paths", nargs="+", metavar="RUN_DIR", help="run directory or .nc files")
    p.add_argument(
        "--reference",
        metavar="REF",
        help="reference predictions (.npz with its .json sidecar, e.g. "
        "benchmarks/reference/mnist-mlp-gaussian.npz)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from bnn_shift.experiments.reference import load_reference, reference_lines
    from bnn_shift.inference.diagnostics import open_run, report
    from bnn_shift.inference.posterior import read_posterior_file

    files = []
    for given in map(Path, args.paths):
        if given.is_dir():
            files.extend(sorted(given.glob("*.nc")))
        elif given.is_file():
            files.append(given)
        else:
            raise FileNotFoundError(f"{given} is neither a run directory nor a .nc file")
    if not files:
        raise FileNotFoundError(f"no saved posteriors (*.nc) in {', '.join(args.paths)}")
    reference = None if args.reference is None else load_reference(args.reference)
    reports = []
    for f in files:
        read_posterior_file(f)  # a damaged or foreign file: an error that names it
        lines = [report(f)]
        if reference is not None:
            lines.extend(reference_lines(open_run(f), reference))
        reports.append("\n".join(lines))
    print("\n\n".join(reports))
