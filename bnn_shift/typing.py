"""Type aliases shared across the package."""

from __future__ import annotations

from typing import Any

PyTree = Any
"""A JAX pytree (an equinox model, its parameters, dicts and lists of arrays): any nesting of
containers with array leaves."""
