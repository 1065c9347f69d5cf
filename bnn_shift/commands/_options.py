"""Declare a command's flags from its experiment's config dataclass (defaults live there only)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

# (flag, config field, argument type, help text)
Option = tuple[str, str, Callable[[str], Any], str]


def add_config_options(
    parser: argparse.ArgumentParser, defaults: Any, options: Sequence[Option]
) -> list[str]:
    """Add each option with default None (so --config and the dataclass fill the rest) and the
    dataclass default shown in its help; -> the config field names."""
    for flag, name, kind, text in options:
        default = getattr(defaults, name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(flag, dest=name, type=kind, default=None, help=f"{text} [{shown}]")
    return [name for _, name, _, _ in options]


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields set on the command line or in --config."""
    return {k: getattr(args, k) for k in args.config_fields if getattr(args, k) is not None}
