"""Covariate-shift harness: corruptions, metrics, `evaluate(...)` -> tidy table, plots.

The harness never fits models; it scores anything with `predict_proba(x)`.
"""

from bnn_shift.shift.calibration import ReliabilityBins, reliability_bins
from bnn_shift.shift.corrupted_sets import (
    CorruptedSet,
    cached_corruption_shifts,
    load_cifar10_c,
    load_corrupted,
    load_mnist_c,
    write_corrupted,
)
from bnn_shift.shift.corruptions import (
    CIFAR10_C,
    MNIST_C,
    Corruption,
    corrupt,
    corruption_shifts,
)
from bnn_shift.shift.domain import DOMAIN_PAIRS, DomainShift, domain_shift
from bnn_shift.shift.evaluate import COLUMNS, OOD_COLUMNS, evaluate, ood_scores
from bnn_shift.shift.metrics import (
    DEFAULT_METRICS,
    DRAW_METRICS,
    METRICS,
    accuracy,
    brier,
    ece,
    mce,
    nll,
)
from bnn_shift.shift.noise import Shift, gaussian_noise, noise_sweep
from bnn_shift.shift.plots import (
    plot_corruption_bars,
    plot_metric_vs_severity,
    plot_reliability,
    plot_severity_grid,
)
from bnn_shift.shift.predictors import DrawPredictor, Predictor, predict
from bnn_shift.shift.summary import Summary, pivot_metric, summarise
from bnn_shift.shift.uncertainty import (
    expected_entropy,
    mutual_information,
    ood_aupr,
    ood_auroc,
    predictive_entropy,
)

__all__ = [
    "CIFAR10_C",
    "COLUMNS",
    "DEFAULT_METRICS",
    "DOMAIN_PAIRS",
    "DRAW_METRICS",
    "METRICS",
    "MNIST_C",
    "OOD_COLUMNS",
    "CorruptedSet",
    "Corruption",
    "DomainShift",
    "DrawPredictor",
    "Predictor",
    "ReliabilityBins",
    "Shift",
    "Summary",
    "accuracy",
    "brier",
    "cached_corruption_shifts",
    "corrupt",
    "corruption_shifts",
    "domain_shift",
    "ece",
    "evaluate",
    "expected_entropy",
    "gaussian_noise",
    "load_cifar10_c",
    "load_corrupted",
    "load_mnist_c",
    "mce",
    "mutual_information",
    "nll",
    "noise_sweep",
    "ood_aupr",
    "ood_auroc",
    "ood_scores",
    "pivot_metric",
    "plot_corruption_bars",
    "plot_metric_vs_severity",
    "plot_reliability",
    "plot_severity_grid",
    "predict",
    "predictive_entropy",
    "reliability_bins",
    "summarise",
    "write_corrupted",
]
