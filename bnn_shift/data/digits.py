"""scikit-learn's bundled 8x8 handwritten digits (1,797 images; no download)."""

from __future__ import annotations

import numpy as np

from bnn_shift.data.dataset import Dataset


def load_digits(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """Digits as (n, 8, 8, 1): pixel/16, then standardised with the train split's mean and
    std; the train/test split is stratified and fixed by `seed`."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    # imported here: scikit-learn is slow to import and only this loader needs it
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = _sk_load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]  # (1797, 8, 8, 1) in [0, 1]
    y = bunch.target.astype(np.int32)  # (1797,)
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=test_fraction, stratify=y, random_state=seed
    )
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)
    mean = float(x[idx_train].mean())
    std = float(x[idx_train].std())
    return Dataset(
        name="digits",
        x_train=(x[idx_train] - mean) / std,
        y_train=y[idx_train],
        x_test=(x[idx_test] - mean) / std,
        y_test=y[idx_test],
        n_classes=10,
        mean=mean,
        std=std,
        classes=tuple(str(i) for i in range(10)),
    )
