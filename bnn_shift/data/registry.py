"""Dataset loaders by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bnn_shift.data.animal_mnist import load_animal_mnist
from bnn_shift.data.cifar10 import load_cifar10
from bnn_shift.data.dataset import Dataset
from bnn_shift.data.digits import load_digits
from bnn_shift.data.fashion_mnist import load_fashion_mnist
from bnn_shift.data.mnist import load_mnist

LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "animal-mnist": load_animal_mnist,
}


def load_dataset(name: str, **kwargs: Any) -> Dataset:
    """Load dataset `name` (a key of LOADERS: "digits", "mnist", "fashion-mnist", "cifar10",
    "animal-mnist"), passing `kwargs` to its loader."""
    try:
        loader = LOADERS[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; valid names: {', '.join(sorted(LOADERS))}"
        ) from None
    return loader(**kwargs)
