"""The `Corruption` record: one named corruption of a benchmark and its severity levels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Corruption", "CorruptionFn"]

# (images (n, H, W, C) float32 in [0, 1], severity, rng) -> corrupted images, same shape
CorruptionFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Corruption:
    """A corruption of `benchmark` with its valid `severities` and the release's default.

    `fn(images, severity, rng)` maps a float32 batch `(n, H, W, C)` in [0, 1] to a batch of
    the same shape in [0, 1]; call it through `corrupt` for validation and seeding.
    """

    name: str
    benchmark: str
    severities: tuple[int, ...]
    default_severity: int
    fn: CorruptionFn

    def __post_init__(self) -> None:
        if self.default_severity not in self.severities:
            raise ValueError(
                f"{self.benchmark}/{self.name}: default severity {self.default_severity} "
                f"is not one of {self.severities}"
            )
