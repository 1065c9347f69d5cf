"""The `laplace` engine: `fit_laplace`, then draws of q, returned as a `LaplacePosterior`."""

from __future__ import annotations

import time
from typing import Any

from bnn_shift.inference.laplace.approx import (
    fit_laplace,
    log_marginal_likelihood,
    marginal_std,
    sample_laplace,
)
from bnn_shift.inference.laplace.predict import LaplacePosterior, check_method
from bnn_shift.inference.laplace.subset import Subset
from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree


def laplace(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    subset: Subset = "all",
    hessian: str = "full",
    likelihood: str | Likelihood = "categorical",
    temperature: float = 1.0,
    n_samples: int = 32,
    seed: int = 0,
    predictive: str = "mc",
    fit_map: bool = True,
    map_settings: dict[str, Any] | None = None,
) -> LaplacePosterior:
    """`fit_laplace`, then n_samples draws from q -> a "variational" `LaplacePosterior`
    predicting by `predictive` ("mc", "glm" or "probit"), with variational {"mean": MAP,
    "std": marginal sds (0 outside the subset)} and attrs method "laplace", subset, hessian,
    predictive, log_marginal_likelihood and seconds (MAP fit included)."""
    check_method(predictive)
    started = time.perf_counter()
    approx = fit_laplace(
        model, prior, x, y, subset=subset, hessian=hessian, likelihood=likelihood,
        temperature=temperature, fit_map=fit_map, map_settings=map_settings,
    )  # fmt: skip
    return LaplacePosterior(
        static=approx.static,
        draws=sample_laplace(approx, n_samples, seed),
        attrs=approx.settings
        | {
            "method": "laplace",
            "temperature": approx.temperature,
            "likelihood": approx.likelihood.describe(),
            "log_marginal_likelihood": log_marginal_likelihood(approx),
            "predictive": predictive,
            "n_samples": n_samples,
            "seed": seed,
            "seconds": time.perf_counter() - started,
        },
        variational={"mean": approx.mean, "std": marginal_std(approx)},
        kind="variational",
        approx=approx,
        predictive=predictive,
    )
