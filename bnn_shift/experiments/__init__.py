"""End-to-end studies built only from the public API (what the `bnn-shift` commands run)."""

from bnn_shift.experiments.compare_priors import (
    ComparePriorsConfig,
    ComparePriorsResult,
    compare_priors,
)
from bnn_shift.experiments.evaluate_runs import Evaluation, evaluate_runs, load_run
from bnn_shift.experiments.forecast import ForecastConfig, ForecastResult, run_forecast
from bnn_shift.experiments.icl import ICLConfig, ICLResult, run_icl
from bnn_shift.experiments.lm import LMConfig, LMResult, run_lm
from bnn_shift.experiments.training import TrainResult, TrainSettings, fit

__all__ = [
    "ComparePriorsConfig",
    "ComparePriorsResult",
    "Evaluation",
    "ForecastConfig",
    "ForecastResult",
    "ICLConfig",
    "ICLResult",
    "LMConfig",
    "LMResult",
    "TrainResult",
    "TrainSettings",
    "compare_priors",
    "evaluate_runs",
    "fit",
    "load_run",
    "run_forecast",
    "run_icl",
    "run_lm",
]
