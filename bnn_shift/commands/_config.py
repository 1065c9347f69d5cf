"""`--config FILE` (TOML) for every command, and the `config.toml` written next to results.

A config file holds the command's settings by option name (`n_train = 2000`, `priors =
["gaussian", "empcov"]`); flags given on the command line override it. Every run that writes to
`--out` records all its settings there as `config.toml`, so `bnn-shift CMD --config
OUT/config.toml` repeats it exactly.
"""

from __future__ import annotations

import argparse
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import tomli_w

CONFIG_NAME = "config.toml"
INTERNAL = {"run", "config", "config_fields", "command", "debug", "quiet"}
HEADER_KEYS = ("command", "bnn_shift_version")


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The settings a run used, TOML-ready (tuples as lists, unset options left out)."""
    out = {}
    for key, value in sorted(vars(args).items()):
        if key in INTERNAL or value is None or callable(value):
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def read_config(path: str | Path, command: str, known: set[str]) -> dict[str, Any]:
    """Settings from a TOML file, checked against the command's option names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file")
    try:
        settings = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"--config {path} is not a text (UTF-8 TOML) file: {err.reason}") from err
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"--config {path} is not valid TOML: {err}") from err
    recorded = settings.pop("command", command)
    settings.pop("bnn_shift_version", None)
    if recorded != command:
        raise ValueError(f"--config {path} was written by `bnn-shift {recorded}`, not {command}")
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(
            f"--config {path}: unknown settings {unknown} for {command}; "
            f"valid: {sorted(known - INTERNAL)}"
        )
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}


def write_config(args: argparse.Namespace, out_dir: str | Path) -> Path:
    """Write `out_dir/config.toml` with every setting of this run."""
    try:
        package_version = version("bnn-shift")
    except PackageNotFoundError:
        package_version = "unknown"
    header = {"command": args.command, "bnn_shift_version": package_version}
    path = Path(out_dir) / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(header | settings_of(args)))
    return path
