"""Covariate-shift harness: corruptions, metrics, ``evaluate(...)`` -> tidy table, plots.

The harness never fits models; it scores anything with ``predict_proba(x)``.
"""

from bnn_shift.shift.evaluate import COLUMNS, Predictor, evaluate, pivot_metric, summarise
from bnn_shift.shift.metrics import METRICS, accuracy, brier, ece, nll
from bnn_shift.shift.noise import Shift, gaussian_noise, noise_sweep
from bnn_shift.shift.plots import plot_metric_vs_severity

__all__ = [
    "COLUMNS",
    "METRICS",
    "Predictor",
    "Shift",
    "accuracy",
    "brier",
    "ece",
    "evaluate",
    "gaussian_noise",
    "nll",
    "noise_sweep",
    "pivot_metric",
    "plot_metric_vs_severity",
    "summarise",
]
