"""The `bnn-shift bound` study: load data, build the network, bound it under each regulariser."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from bnn_shift.bounds.pipeline import BoundReport, BoundSettings, bound_model
from bnn_shift.data import Dataset, load_dataset
from bnn_shift.data.cache import atomic_write
from bnn_shift.models import MLP, LeNet5
from bnn_shift.priors import Prior, make_prior
from bnn_shift.typing import PyTree

MODELS = ("mlp", "lenet")
REGULARISERS = ("none", "gaussian", "empcov")


@dataclass
class BoundExperimentConfig:
    """Data, network and regularisers of a bound run; `settings` shapes each bound."""

    dataset: str = "mnist"  # "mnist" or "digits"
    data_dir: str | None = None
    model: str = "mlp"
    hidden: tuple[int, ...] = (256, 256)
    priors: tuple[str, ...] = ("gaussian",)  # regularisers of the subspace fit, one bound each
    prior_scale: float = 0.1
    empcov_eps: float = 1e-8
    seed: int = 0  # θ₀ (the network's init) is drawn from this seed, before any data is seen
    settings: BoundSettings = field(default_factory=BoundSettings)

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose from {', '.join(MODELS)}")
        unknown = [p for p in self.priors if p not in REGULARISERS]
        if unknown or not self.priors:
            raise ValueError(f"priors must be some of {', '.join(REGULARISERS)}, got {self.priors}")


@dataclass
class BoundExperimentResult:
    config: BoundExperimentConfig
    dataset: str
    n_train: int
    n_test: int
    reports: dict[str, BoundReport]

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "config": dataclasses.asdict(self.config),
            "reports": {name: r.to_dict() for name, r in self.reports.items()},
        }


def build_network(config: BoundExperimentConfig, data: Dataset) -> PyTree:
    """θ₀, the seeded init."""
    key = jax.random.key(config.seed)
    if config.model == "mlp":
        return MLP(data.n_features, config.hidden, data.n_classes, key=key)
    height, _, channels = data.image_shape
    return LeNet5(channels, data.n_classes, image_size=height, key=key)


def make_regulariser(
    name: str, model: PyTree, config: BoundExperimentConfig
) -> Callable[[np.ndarray], Prior] | None:
    """A factory x -> the named prior for `model` (EmpCov is built from the inputs it is given)."""
    if name == "none":
        return None
    return lambda x: make_prior(name, model, x, config.prior_scale, config.empcov_eps)


def run_bound_experiment(
    config: BoundExperimentConfig, out_dir: str | Path | None = None, progress: bool = True
) -> BoundExperimentResult:
    """Bound the configured network once per regulariser; write report.json to out_dir, whose
    train-<regulariser>/ subdirectories checkpoint the training every epoch (a rerun with the
    same out_dir resumes)."""
    kwargs = {"data_dir": config.data_dir} if config.data_dir and config.dataset == "mnist" else {}
    data = load_dataset(config.dataset, **kwargs)
    model = build_network(config, data)
    reports = {}
    for name in config.priors:
        regulariser = make_regulariser(name, model, config)
        reports[name] = bound_model(
            model,
            data.x_train,
            data.y_train,
            config.settings,
            regulariser=regulariser,
            x_test=data.x_test,
            y_test=data.y_test,
            progress=progress,
            run_dir=None if out_dir is None else Path(out_dir) / f"train-{name}",
        )
    result = BoundExperimentResult(config, data.name, len(data.y_train), len(data.y_test), reports)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_write(out / "report.json") as fh:
            fh.write(json.dumps(result.to_dict(), indent=2).encode())
        for name, report in reports.items():
            if report.arrays:  # the coded hypothesis, reloadable with np.load
                with atomic_write(out / f"hypothesis-{name}.npz") as fh:
                    np.savez(fh, **report.arrays)
    return result
