"""scikit-learn digits loader."""

from __future__ import annotations

import numpy as np

from bnn_shift.data import load_digits


def test_digits_shapes_split_and_normalisation() -> None:
    ds = load_digits(seed=0)
    assert ds.name == "digits" and ds.n_classes == 10
    assert ds.x_train.shape == (1347, 8, 8, 1) and ds.x_test.shape == (450, 8, 8, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert abs(float(ds.x_train.mean())) < 1e-5 and abs(float(ds.x_train.std()) - 1) < 1e-5
    raw = ds.denormalize(ds.x_train)
    assert raw.min() > -1e-6 and raw.max() < 1 + 1e-6
    # stratified: each class's share of the test set matches its share overall
    all_counts = np.bincount(np.concatenate([ds.y_train, ds.y_test]), minlength=10)
    test_counts = np.bincount(ds.y_test, minlength=10)
    assert np.abs(test_counts - all_counts * 0.25).max() <= 1


def test_digits_seed_and_fraction() -> None:
    a, b, c = load_digits(seed=1), load_digits(seed=1), load_digits(seed=2)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.y_test, c.y_test) or not np.array_equal(a.x_test, c.x_test)
    small = load_digits(test_fraction=0.1)
    assert len(small.y_test) == 180
