"""Dataset loaders by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bnn_shift.data.dataset import Dataset
from bnn_shift.data.digits import load_digits
from bnn_shift.data.mnist import load_mnist

LOADERS: dict[str, Callable[..., Dataset]] = {"digits": load_digits, "mnist": load_mnist}


def load_dataset(name: str, **kwargs: Any) -> Dataset:
    """Load dataset `name` ("digits" or "mnist"), passing `kwargs` to its loader."""
    try:
        loader = LOADERS[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; valid names: {', '.join(sorted(LOADERS))}"
        ) from None
    return loader(**kwargs)
