"""The state of a run directory, kept in its `config.json` as the run goes: which methods are
saved (whole, or partial after Ctrl-C) and whether the run is running, complete, interrupted or
failed, so that `evaluate` scores only what this run finished and says when it is incomplete."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bnn_shift.inference import Posterior

CONFIG_FILE = "config.json"
CHAINS_DIR = "chains"  # the samplers' checkpoints, one run_dir per method
RUN_KEY = "run"  # config.json's entry for the run's state
STATES = ("running", "complete", "interrupted", "failed")


def posterior_path(out: Path, method: str) -> Path:
    return Path(out) / f"posterior-{method}.nc"


@dataclass
class RunRecord:
    """A run directory's config (the settings and what they resolved to) and its progress."""

    settings: dict[str, Any]  # written as config.json, with the state under RUN_KEY
    status: str = "running"
    done: list[str] = field(default_factory=list)  # methods saved whole
    partial: list[str] = field(default_factory=list)  # methods saved when Ctrl-C stopped them
    note: str | None = None  # why the run stopped (interrupted / failed)

    def write(self, out: Path) -> Path:
        """Write config.json atomically (a temporary file renamed into place)."""
        state = {"status": self.status, "methods_done": self.done}
        state |= {"methods_partial": self.partial} if self.partial else {}
        state |= {"note": self.note} if self.note else {}
        path = Path(out) / CONFIG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.settings | {RUN_KEY: state}, indent=2))
        os.replace(tmp, path)
        return path

    def save(self, out: Path, method: str, posterior: Posterior) -> Path:
        """Save one method's posterior and record it (partial when it was interrupted)."""
        path = posterior.save(posterior_path(out, method))
        (self.partial if posterior.attrs.get("interrupted") else self.done).append(method)
        self.write(out)
        return path

    def finish(self, out: Path, status: str, note: str | None = None) -> None:
        """Record how the run ended (one of STATES)."""
        self.status, self.note = status, note
        self.write(out)


def resumable_methods(out: Path, settings: dict[str, Any]) -> list[str]:
    """The methods an earlier run of exactly `settings` saved whole in `out`, in its order: none
    when `out` has no readable config.json or it records other settings."""
    path = Path(out) / CONFIG_FILE
    try:
        raw = json.loads(path.read_text())
        state = read_run_state(raw, path) if isinstance(raw, dict) else None
    except (OSError, UnicodeDecodeError, ValueError):  # a damaged record: start afresh
        return []
    recorded = {k: v for k, v in raw.items() if k != RUN_KEY} if state else None
    if recorded != json.loads(json.dumps(settings)):  # JSON turns tuples into lists
        return []
    return [m for m in state["methods_done"] if posterior_path(out, m).is_file()]


def stale_posteriors(out: Path, methods: list[str] | tuple[str, ...]) -> list[Path]:
    """Posterior files in `out` of methods not in `methods`: an earlier run's."""
    files = sorted(Path(out).glob("posterior-*.nc"))
    return [f for f in files if f.stem.removeprefix("posterior-") not in methods]


def read_run_state(raw: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """The run state recorded in a config.json's contents (None in directories written before
    it was recorded), checked."""
    state = raw.get(RUN_KEY)
    if state is None:
        return None
    ok = isinstance(state, dict) and state.get("status") in STATES
    if not (ok and isinstance(state.get("methods_done"), list)):
        raise ValueError(f"{path}: its {RUN_KEY!r} entry is damaged ({state!r}); run again")
    return {"methods_partial": [], "note": None} | state
