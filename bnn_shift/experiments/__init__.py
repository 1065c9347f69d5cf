"""End-to-end studies built only from the public API (what the `bnn-shift` commands run)."""

from bnn_shift.experiments.compare_priors import (
    ComparePriorsConfig,
    ComparePriorsResult,
    compare_priors,
)
from bnn_shift.experiments.evaluate_runs import Evaluation, evaluate_runs, load_run

__all__ = [
    "ComparePriorsConfig",
    "ComparePriorsResult",
    "Evaluation",
    "compare_priors",
    "evaluate_runs",
    "load_run",
]
