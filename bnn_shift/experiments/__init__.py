"""End-to-end studies built only from the public API (what the `bnn-shift` commands run)."""

from bnn_shift.experiments.compare_priors import (
    ComparePriorsConfig,
    ComparePriorsResult,
    compare_priors,
)

__all__ = ["ComparePriorsConfig", "ComparePriorsResult", "compare_priors"]
