"""load_dataset dispatch by name."""

from __future__ import annotations

import pytest

from bnn_shift.data import load_dataset


def test_dispatch_digits() -> None:
    assert load_dataset("Digits", seed=0).name == "digits"


def test_unknown_name_lists_valid() -> None:
    with pytest.raises(ValueError, match="animal-mnist, cifar10, digits, fashion-mnist, mnist"):
        load_dataset("cifar100")
