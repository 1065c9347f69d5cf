"""Evaluate saved posteriors from compare-priors run directories under a chosen shift set.

A run directory (written by `bnn_shift.experiments.compare_priors.compare_priors`) holds
`config.json` and one `posterior-<method>.nc` per method. The config is enough to rebuild the
test set and a model skeleton of the right architecture, which `Posterior.load` needs for the
static structure.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bnn_shift.data import Dataset
from bnn_shift.experiments.compare_priors import ComparePriorsConfig, initial_model, load_data
from bnn_shift.experiments.run_dir import CONFIG_FILE, posterior_path, read_run_state
from bnn_shift.inference import Posterior
from bnn_shift.shift import (
    ReliabilityBins,
    Shift,
    Summary,
    evaluate,
    noise_sweep,
    plot_corruption_bars,
    plot_metric_vs_severity,
    plot_reliability,
    plot_severity_grid,
    summarise,
)
from bnn_shift.shift.calibration import reliability_from_confidence
from bnn_shift.typing import PyTree

SHIFT_SETS = ("noise", "mnist-c", "cifar10-c")
EVAL_METRICS = ("accuracy", "nll", "ece", "brier", "mce", "entropy", "mutual_info")
DEFAULT_NOISE = ComparePriorsConfig().noise_stds


@dataclass
class SavedRun:
    """A compare-priors run directory read back: its settings and fitted posteriors."""

    path: Path
    config: ComparePriorsConfig
    dataset: str  # the dataset actually used ("auto" resolved)
    posteriors: dict[str, Posterior]
    status: str = "complete"  # run_dir.STATES: "complete" unless the run stopped early


def read_run_config(run_dir: str | Path) -> tuple[ComparePriorsConfig, dict]:
    """The `ComparePriorsConfig` of a run directory and its `resolved` record."""
    path, raw = _read_config_json(run_dir)
    known = {f.name: f for f in dataclasses.fields(ComparePriorsConfig)}
    defaults = ComparePriorsConfig()
    given = {}
    for name, value in raw.items():
        if name in known:
            is_tuple = isinstance(getattr(defaults, name), tuple)
            given[name] = tuple(value) if is_tuple and isinstance(value, list) else value
    try:
        return ComparePriorsConfig(**given), raw.get("resolved", {})
    except ValueError as err:
        raise ValueError(f"{path}: {err} (the file was edited or damaged; run again)") from err


def _read_config_json(run_dir: str | Path) -> tuple[Path, dict]:
    """(path, contents) of a run directory's config.json, with errors that name it."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a compare-priors run directory: it has no {CONFIG_FILE}"
        )
    try:
        raw = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); restore it or run again") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path} holds {type(raw).__name__}, not a run's settings; run again")
    return path, raw


def model_skeleton(config: ComparePriorsConfig, data: Dataset) -> PyTree:
    """A model of the run's architecture (its weights are irrelevant) for `Posterior.load`."""
    return initial_model(config, data)


def run_data(
    config: ComparePriorsConfig,
    resolved: dict,
    n_test: int | str | None = None,
    data_dir: str | None = None,
) -> Dataset:
    """The run's dataset and stratified subsets (same seed); `n_test` overrides its test size
    (`None` keeps the run's own, `"all"` takes the whole test set)."""
    changes: dict = {"dataset": resolved.get("dataset", config.dataset)}
    if n_test == "all":
        changes["n_test"] = None
    elif n_test is not None:
        changes["n_test"] = int(n_test)
    if data_dir is not None:
        changes["data_dir"] = data_dir
    return load_data(dataclasses.replace(config, **changes))


def load_run(run_dir: str | Path, data: Dataset) -> SavedRun:
    """Read the posteriors of `run_dir` (in the run's fitting order) that its run finished, as
    config.json records; `data` supplies the input shape and class count of the model skeleton.
    Posteriors of an earlier run into the same directory are ignored, with a warning; so is an
    incomplete run (interrupted, failed, or killed: still "running")."""
    run_dir = Path(run_dir)
    config, resolved = read_run_config(run_dir)
    path, raw = _read_config_json(run_dir)
    state = read_run_state(raw, path)
    files = {f.stem.removeprefix("posterior-"): f for f in run_dir.glob("posterior-*.nc")}
    if state is not None:
        files = _finished_files(run_dir, files, state)
    if not files:
        raise FileNotFoundError(f"{run_dir} has no saved posteriors (posterior-*.nc)")
    order = [m for m in config.methods if m in files] + sorted(set(files) - set(config.methods))
    skeleton = model_skeleton(config, data)
    posteriors = {m: Posterior.load(files[m], skeleton) for m in order}
    status = "complete" if state is None else state["status"]
    return SavedRun(run_dir, config, resolved.get("dataset", config.dataset), posteriors, status)


def _finished_files(run_dir: Path, files: dict[str, Path], state: dict) -> dict[str, Path]:
    """The posterior files the recorded run saved, warning about the others and about an
    incomplete run; a FileNotFoundError when a saved one is gone."""
    saved = [*state["methods_done"], *state["methods_partial"]]
    stale = sorted(set(files) - set(saved))
    if stale:
        warnings.warn(
            f"{run_dir}: ignoring {', '.join(files[m].name for m in stale)}, not written by the "
            "run its config.json records (an earlier run into the same directory)",
            stacklevel=4,
        )
    gone = [m for m in saved if m not in files]
    if gone:
        raise FileNotFoundError(
            f"{run_dir} lacks {', '.join(posterior_path(run_dir, m).name for m in gone)}, which "
            "its run saved; restore them or run again"
        )
    if state["status"] != "complete":
        why = f" ({state['note']})" if state["note"] else ""
        partial = state["methods_partial"]
        warnings.warn(
            f"{run_dir} is an incomplete run, {state['status']}{why}: evaluating the "
            f"{len(saved)} methods it saved ({', '.join(saved) or 'none'})"
            + (f", of which {', '.join(partial)} stopped early" if partial else ""),
            stacklevel=4,
        )
    return {m: files[m] for m in saved}


def make_shifts(
    kind: str,
    data: Dataset,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[float] | None = None,
    seed: int = 0,
    cache: bool = False,
    progress: bool = True,
) -> list[Shift]:
    """The shifts of one named set, always including a clean (severity 0) set.

    `"noise"`: Gaussian noise with stds `severities` (default 0, 0.5, ..., 3) in
    normalised units. `"mnist-c"` / `"cifar10-c"`: the benchmark's corruptions
    (`corruptions` picks some; default all) at integer `severities` (default: the
    release's), plus a `"clean"` shift at severity 0. `cache=True` reads the corrupted
    test images from the on-disk cache of `cached_corruption_shifts` (made on first use).
    """
    if kind not in SHIFT_SETS:
        raise ValueError(f"unknown shift set {kind!r}; choose from {', '.join(SHIFT_SETS)}")
    if kind == "noise":
        if cache:
            raise ValueError("the corrupted-set cache applies to mnist-c and cifar10-c, not noise")
        if corruptions:
            raise ValueError("--corruptions applies to mnist-c and cifar10-c, not to noise")
        stds = tuple(severities) if severities else DEFAULT_NOISE
        shifts = noise_sweep(stds, seed=seed)
        if all(s.severity > 0 for s in shifts):
            shifts.insert(0, noise_sweep((0.0,), seed=seed)[0])
        return shifts
    from bnn_shift.shift.corrupted_sets import cached_corruption_shifts
    from bnn_shift.shift.corruptions import corruption_shifts

    levels = None
    if severities:
        if any(int(s) != s for s in severities):
            raise ValueError(f"{kind} severities must be integers; got {list(severities)}")
        levels = [int(s) for s in severities]
    if cache:
        shifts = cached_corruption_shifts(data, kind, corruptions, levels, seed, progress=progress)
    else:
        shifts = corruption_shifts(data, kind, corruptions, levels, seed)
    shifts = list(shifts)
    if all(s.severity > 0 for s in shifts):
        shifts.insert(0, Shift("clean", 0.0, lambda x: x))
    return shifts


@dataclass
class Evaluation:
    """The result of `evaluate_runs`."""

    table: pd.DataFrame  # tidy: method, shift, severity, metric, value
    summary: Summary
    reliability: dict[str, dict[str, ReliabilityBins]]  # "clean"/"shifted" -> method -> bins
    dataset: str
    n_test: int
    settings: dict = field(default_factory=dict)


class _Pool:
    """Collects confidence and correctness per (clean | shifted, method) for reliability data."""

    def __init__(self) -> None:
        self.parts: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}

    def __call__(self, method: str, shift: Shift, probs: np.ndarray, labels: np.ndarray):
        group = "clean" if shift.severity == 0 else "shifted"
        hit = np.argmax(probs, axis=-1) == labels
        self.parts.setdefault((group, method), []).append((probs.max(axis=-1), hit))

    def bins(self) -> dict[str, dict[str, ReliabilityBins]]:
        out: dict[str, dict[str, ReliabilityBins]] = {}
        for (group, method), parts in self.parts.items():
            conf = np.concatenate([c for c, _ in parts])
            hit = np.concatenate([h for _, h in parts])
            out.setdefault(group, {})[method] = reliability_from_confidence(conf, hit)
        return out


def evaluate_runs(
    run_dirs: Sequence[str | Path],
    shifts: str = "noise",
    corruptions: Sequence[str] | None = None,
    severities: Sequence[float] | None = None,
    n_test: int | str | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    cache: bool = False,
    metrics: Sequence[str] = EVAL_METRICS,
    batch_size: int = 1000,
    progress: bool = True,
) -> Evaluation:
    """Load the posteriors of every run directory and evaluate them under one shift set.

    The test set is rebuilt from the first run's config (dataset, subset seed and test
    size; `n_test` overrides the size, `"all"` = the whole test set); every run must use
    the same dataset. With several runs each method is named `<run dir name>/<method>`.
    `seed` drives the shift randomness (noise draws, corruption parameters); `cache`
    takes corrupted images from the on-disk cache (see `make_shifts`).
    """
    if not run_dirs:
        raise ValueError("give at least one run directory")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed is {seed!r}; give an integer >= 0")
    config, resolved = read_run_config(run_dirs[0])
    data = run_data(config, resolved, n_test, data_dir)
    methods: dict[str, Posterior] = {}
    incomplete: dict[str, str] = {}
    for run_dir in run_dirs:
        run = load_run(run_dir, data)
        if run.status != "complete":
            incomplete[str(run_dir)] = run.status
        if run.dataset != data.name:
            raise ValueError(
                f"{run_dir} was fitted on {run.dataset!r} but {run_dirs[0]} on {data.name!r}; "
                "evaluate runs of one dataset together"
            )
        for method, posterior in run.posteriors.items():
            name = method if len(run_dirs) == 1 else f"{Path(run_dir).name}/{method}"
            if name in methods:
                raise ValueError(f"two runs give the method name {name!r}; rename a run directory")
            methods[name] = posterior

    shift_list = make_shifts(shifts, data, corruptions, severities, seed, cache, progress)
    pool = _Pool()
    table = evaluate(
        methods,
        data,
        shift_list,
        metrics=metrics,
        batch_size=batch_size,
        progress=progress,
        callback=pool,
    )
    settings = {
        "runs": [str(r) for r in run_dirs],
        "shifts": shifts,
        "corruptions": sorted({s.name for s in shift_list if s.severity > 0}),
        "severities": sorted({float(s.severity) for s in shift_list}),
        "dataset": data.name,
        "n_test": len(data.y_test),
        "seed": seed,
        "cache": cache,
        "metrics": list(metrics),
    }
    settings |= {"incomplete_runs": incomplete} if incomplete else {}
    return Evaluation(table, summarise(table), pool.bins(), data.name, len(data.y_test), settings)


def write_evaluation(result: Evaluation, out: str | Path) -> list[Path]:
    """metrics.csv, summary tables (CSV), plots (PNG) and settings.json; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save_csv(frame: pd.DataFrame, name: str, index: bool = True) -> None:
        frame.to_csv(out / name, index=index)
        written.append(out / name)

    def save_fig(fig, name: str) -> None:
        fig.savefig(out / name, dpi=120, bbox_inches="tight")
        written.append(out / name)

    table, summary = result.table, result.summary
    save_csv(table, "metrics.csv", index=False)
    save_csv(summary.overall, "summary.csv")
    save_csv(summary.per_severity, "per_severity.csv")
    save_csv(summary.per_corruption, "per_corruption.csv")
    (out / "settings.json").write_text(json.dumps(result.settings, indent=2))
    written.append(out / "settings.json")

    shifted = table[table["severity"] > 0]
    n_corruptions = shifted["shift"].nunique()
    # Curves against severity for noise and where a corruption has several levels (not for
    # the MNIST-C release, which holds each corruption at one level of its own).
    several_levels = shifted.groupby("shift")["severity"].nunique().max() > 1
    several_levels = several_levels or result.settings.get("shifts") == "noise"
    for metric in ("accuracy", "ece"):
        if metric not in set(table["metric"]):
            continue
        if several_levels:
            fig = plot_metric_vs_severity(table, metric)
            fig.axes[0].set_title(f"{result.dataset}: {metric} under {result.settings['shifts']}")
            save_fig(fig, f"{metric}.png")
        if n_corruptions > 1:
            save_fig(plot_corruption_bars(table, metric), f"{metric}_by_corruption.png")
            if several_levels:
                save_fig(plot_severity_grid(table, metric), f"{metric}_grid.png")
    for group, bins in result.reliability.items():
        title = f"{result.dataset}, {group} test set{'s pooled' if group == 'shifted' else ''}"
        save_fig(plot_reliability(bins, title=title), f"reliability_{group}.png")
    return written
