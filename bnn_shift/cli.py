"""The `bnn-shift` command: a thin shell over the public API.

Each command lives in its own module under `bnn_shift.commands` with `add(subparsers)` (which
sets `run` as the parser default) and `run(args)`; list it in COMMANDS to expose it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bnn_shift.commands._config import read_config, write_config

COMMANDS = ("bound", "compare_priors", "corrupt", "diagnose", "evaluate", "forecast", "icl", "lm")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bnn-shift",
        description="Bayesian neural networks under covariate shift.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"bnn_shift.commands.{name}").add(sub)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Flags, on top of the --config file's settings when one is given."""
    args = parser.parse_args(argv)
    if args.config:
        command = _subparser(parser, args.command)
        known = {action.dest for action in command._actions}
        command.set_defaults(**read_config(args.config, args.command, known))
        args = parser.parse_args(argv)
    return args


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def one_line(err: BaseException) -> str:
    """The error's message on one line (its type when it has none); --debug shows the rest."""
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except (OSError, ValueError) as err:
        parser.error(str(err))
    try:
        if getattr(args, "out", None):
            write_config(args, args.out)
        args.run(args)
    except KeyboardInterrupt as err:
        print(f"interrupted{': ' + str(err) if str(err) else ''}", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        print(f"bnn-shift {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
