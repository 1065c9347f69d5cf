"""Dataset validation, helpers and stratified subsets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnn_shift.data import Dataset
from bnn_shift.data.dataset import stratified_indices


def _toy(n_train: int = 100, n_test: int = 40, n_classes: int = 4, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    # imbalanced classes: probabilities 0.4, 0.3, 0.2, 0.1 for 4 classes
    p = np.arange(n_classes, 0, -1) / np.arange(n_classes, 0, -1).sum()
    return Dataset(
        name="toy",
        x_train=rng.normal(size=(n_train, 3, 2, 1)),
        y_train=rng.choice(n_classes, size=n_train, p=p),
        x_test=rng.normal(size=(n_test, 3, 2, 1)),
        y_test=rng.choice(n_classes, size=n_test, p=p),
        n_classes=n_classes,
    )


def test_casts_and_helpers() -> None:
    ds = _toy()
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.image_shape == (3, 2, 1) and ds.n_features == 6
    assert ds.classes == ("0", "1", "2", "3")
    flat = ds.flat("test")
    assert flat.shape == (40, 6) and np.shares_memory(flat, ds.x_test)
    np.testing.assert_allclose(ds.normalize(ds.denormalize(ds.x_train)), ds.x_train, atol=1e-6)
    with pytest.raises(ValueError, match="split"):
        ds.flat("val")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"x_train": np.full((100, 3, 2, 1), np.nan)}, "non-finite"),
        ({"x_test": np.full((40, 3, 2, 1), np.inf)}, "non-finite"),
        ({"y_train": np.full(100, 4)}, "outside \\[0, 4\\)"),
        ({"y_test": np.full(40, -1)}, "outside"),
        ({"y_train": np.zeros(99, int)}, "100 rows but y_train has 99"),
        ({"x_test": np.zeros((40, 2, 3, 1))}, "test images are"),
        ({"x_train": np.zeros((100, 6))}, "\\(n, H, W, C\\)"),
        ({"y_train": np.zeros(100)}, "integer labels"),
        ({"classes": ("a", "b")}, "2 class names"),
        ({"std": 0.0}, "invalid std"),
        ({"mean": (0.1, 0.2)}, "mean must be"),
        ({"n_classes": 0}, "n_classes"),
    ],
)
def test_validation(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(_toy(), **change)


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _toy().name = "x"  # type: ignore[misc]


def test_subset_stratified_and_deterministic() -> None:
    ds = _toy(n_train=1000, n_test=400)
    sub = ds.subset(200, None, seed=3)
    assert len(sub.y_train) == 200 and len(sub.y_test) == 400
    np.testing.assert_array_equal(sub.x_test, ds.x_test)
    full = np.bincount(ds.y_train, minlength=4) / 1000
    part = np.bincount(sub.y_train, minlength=4) / 200
    assert np.abs(full - part).max() <= 1 / 200 + 1e-12
    again = ds.subset(200, None, seed=3)
    np.testing.assert_array_equal(again.x_train, sub.x_train)
    other = ds.subset(200, None, seed=4)
    assert not np.array_equal(other.x_train, sub.x_train)
    # rows keep their pairing of x and y
    rows = {tuple(r): y for r, y in zip(ds.flat(), ds.y_train, strict=True)}
    assert all(rows[tuple(r)] == y for r, y in zip(sub.flat(), sub.y_train, strict=True))


def test_subset_errors() -> None:
    ds = _toy()
    with pytest.raises(ValueError, match="exceeds"):
        ds.subset(101, None, seed=0)
    with pytest.raises(ValueError, match="below n_classes"):
        ds.subset(None, 3, seed=0)
    assert ds.subset(None, None, seed=0).x_train is ds.x_train


@settings(max_examples=100, deadline=None)
@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    frac=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_indices_property(counts: list[int], frac: float, seed: int) -> None:
    labels = np.repeat(np.arange(len(counts)), counts)
    total, k = len(labels), len(counts)
    n = k + round(frac * (total - k))
    idx = stratified_indices(labels, n, np.random.default_rng(seed))
    assert len(idx) == n == len(np.unique(idx))
    got = np.bincount(labels[idx], minlength=k)
    assert (got >= 1).all() and (got <= counts).all()
    # within one item (plus the at-least-one floor) of the proportional quota
    quota = np.asarray(counts) * n / total
    assert (np.abs(got - quota) < 1 + k).all()
