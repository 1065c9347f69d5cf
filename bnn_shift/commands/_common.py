"""Argument types and options shared by every `bnn-shift` command."""

from __future__ import annotations

import argparse


def floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected integers like 256,256, got {text!r}") from err


def size(text: str) -> int | None:
    return None if text.lower() in ("all", "none") else int(text)


def names(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def common_options() -> argparse.ArgumentParser:
    """Options every command takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    common.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file of settings (option names as keys; flags override it); every run "
        "writes its own to OUT/config.toml",
    )
    return common


def step_size(text: str) -> float | str:
    """A positive step size or "auto" (tuned by dual averaging)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f'expected a number or "auto", got {text!r}') from err
