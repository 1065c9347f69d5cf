"""The `Dataset` container: normalised image arrays, labels and the normalisation used."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import numpy as np


def stratified_indices(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of `n` items drawn without replacement, class sizes proportional to
    `labels` (largest remainder), every present class getting at least one."""
    # hand-written: sklearn's splitters also require the left-out part to cover every class
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    total = len(labels)
    if not len(classes) <= n <= total:
        raise ValueError(
            f"cannot draw {n} items stratified over {len(classes)} classes from {total}"
        )
    quota = counts * (n / total)  # (k,)
    alloc = np.clip(np.floor(quota).astype(np.int64), 1, counts)
    while (diff := n - int(alloc.sum())) != 0:
        slack = quota - alloc
        if diff > 0:  # give one more to the most under-served class with room left
            slack[alloc >= counts] = -np.inf
            alloc[int(np.argmax(slack))] += 1
        else:  # take one from the most over-served class that keeps at least one
            slack[alloc <= 1] = np.inf
            alloc[int(np.argmin(slack))] -= 1
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=int(k), replace=False)
        for c, k in zip(classes, alloc, strict=True)
    ]
    return np.sort(np.concatenate(picked))


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image dataset, inputs already normalised as raw01 = x * std + mean.

    x arrays are (n, H, W, C) float32; y arrays are (n,) int32 in [0, n_classes).
    `mean`/`std` are a float or one value per channel. `classes` defaults to "0", "1", ...
    Inputs are cast to float32 / int32 on construction and validated.
    """

    name: str
    x_train: np.ndarray  # (n_train, H, W, C) float32
    y_train: np.ndarray  # (n_train,) int32
    x_test: np.ndarray  # (n_test, H, W, C) float32
    y_test: np.ndarray  # (n_test,) int32
    n_classes: int
    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0
    classes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.n_classes, int | np.integer) or self.n_classes < 1:
            raise ValueError(f"{self.name}: n_classes must be a positive int, got {self.n_classes}")
        for split in ("train", "test"):
            x = np.asarray(getattr(self, f"x_{split}"))
            y = np.asarray(getattr(self, f"y_{split}"))
            if x.ndim != 4:
                raise ValueError(f"{self.name}: x_{split} must be (n, H, W, C), got {x.shape}")
            if y.ndim != 1:
                raise ValueError(f"{self.name}: y_{split} must be (n,), got {y.shape}")
            if len(x) != len(y):
                raise ValueError(
                    f"{self.name}: x_{split} has {len(x)} rows but y_{split} has {len(y)}"
                )
            if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
                raise ValueError(f"{self.name}: x_{split} has non-numeric dtype {x.dtype}")
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"{self.name}: y_{split} must be integer labels, got {y.dtype}")
            if y.size and (y.min() < 0 or y.max() >= self.n_classes):
                raise ValueError(
                    f"{self.name}: y_{split} has labels in [{y.min()}, {y.max()}], "
                    f"outside [0, {self.n_classes})"
                )
            x = x.astype(np.float32, copy=False)
            if not np.isfinite(x).all():
                raise ValueError(f"{self.name}: x_{split} has non-finite values (NaN or inf)")
            object.__setattr__(self, f"x_{split}", x)
            object.__setattr__(self, f"y_{split}", y.astype(np.int32, copy=False))
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"{self.name}: train images are {self.x_train.shape[1:]} "
                f"but test images are {self.x_test.shape[1:]}"
            )
        n_channels = self.x_train.shape[-1]
        for attr in ("mean", "std"):
            v = np.asarray(getattr(self, attr), dtype=np.float64)
            if v.ndim > 1 or (v.ndim == 1 and len(v) != n_channels):
                raise ValueError(f"{self.name}: {attr} must be a float or {n_channels} values")
            if not np.isfinite(v).all() or (attr == "std" and (v <= 0).any()):
                raise ValueError(f"{self.name}: invalid {attr} {getattr(self, attr)}")
        if not self.classes:
            object.__setattr__(self, "classes", tuple(str(i) for i in range(self.n_classes)))
        if len(self.classes) != self.n_classes:
            raise ValueError(
                f"{self.name}: {len(self.classes)} class names for {self.n_classes} classes"
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C)."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def n_features(self) -> int:
        """H * W * C."""
        return int(np.prod(self.image_shape))

    def flat(self, split: Literal["train", "test"] = "train") -> np.ndarray:
        """Inputs of `split` as (n, H*W*C); a view when the array is contiguous."""
        x = self.x_train if split == "train" else self.x_test if split == "test" else None
        if x is None:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return x.reshape(len(x), -1)

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        """Map normalised inputs (..., C) back to pixel space in [0, 1]."""
        return x * np.asarray(self.std, np.float32) + np.asarray(self.mean, np.float32)

    def normalize(self, raw01: np.ndarray) -> np.ndarray:
        """Map pixel-space inputs (..., C) in [0, 1] to this dataset's normalisation."""
        return (raw01 - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)

    def subset(self, n_train: int | None, n_test: int | None, seed: int) -> Dataset:
        """Stratified random subset (class proportions kept, original order kept);
        None keeps a split whole. Deterministic given `seed`."""
        picks = {}
        for i, (split, n) in enumerate((("train", n_train), ("test", n_test))):
            y = getattr(self, f"y_{split}")
            if n is None:
                continue
            if n > len(y):
                raise ValueError(f"{self.name}: n_{split}={n} exceeds the {len(y)} available")
            if n < self.n_classes:
                raise ValueError(
                    f"{self.name}: n_{split}={n} is below n_classes={self.n_classes}; "
                    "a stratified subset needs at least one item per class"
                )
            idx = stratified_indices(y, n, np.random.default_rng([seed, i]))
            picks[f"x_{split}"] = getattr(self, f"x_{split}")[idx]
            picks[f"y_{split}"] = y[idx]
        return dataclasses.replace(self, **picks)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"image_shape={self.image_shape}, n_classes={self.n_classes})"
        )
