"""Tests for bnn_shift.shift.noise."""

from __future__ import annotations

import numpy as np
import pytest

from bnn_shift.shift.noise import Shift, gaussian_noise, noise_sweep


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(size=(64, 8, 8, 1)).astype(np.float32)


def test_deterministic_by_seed(x):
    a = gaussian_noise(x, 1.0, seed=3)
    assert np.array_equal(a, gaussian_noise(x, 1.0, seed=3))
    assert not np.allclose(a, gaussian_noise(x, 1.0, seed=4))
    assert a.dtype == np.float32
    assert a.shape == x.shape


def test_independent_of_chunking(x):
    full = gaussian_noise(x, 0.7, seed=1)
    parts = [gaussian_noise(x[i : i + 10], 0.7, seed=1, first_index=i) for i in range(0, 64, 10)]
    assert np.array_equal(full, np.concatenate(parts))


def test_std_zero_is_identity(x):
    out = gaussian_noise(x, 0.0, seed=0)
    assert np.array_equal(out, x)
    assert out.dtype == np.float32
    assert gaussian_noise(x.astype(np.float64), 0, seed=0).dtype == np.float32


def test_does_not_modify_input(x):
    before = x.copy()
    gaussian_noise(x, 2.0, seed=0)
    assert np.array_equal(x, before)


def test_noise_moments_within_monte_carlo_error():
    std = 1.5
    x = np.full((500, 28, 28, 1), -0.42, dtype=np.float32)
    noise = (gaussian_noise(x, std, seed=0) - x).astype(np.float64).ravel()
    m = noise.size
    # For N(0, s^2) samples: SE(mean) = s / sqrt(m), SE(sample std) ≈ s / sqrt(2 m).
    assert abs(noise.mean()) < 5 * std / np.sqrt(m)
    assert abs(noise.std() - std) < 5 * std / np.sqrt(2 * m)
    # Neighbouring examples get independent noise.
    rows = noise.reshape(500, -1)
    assert abs(np.corrcoef(rows[0], rows[1])[0, 1]) < 5 / np.sqrt(rows.shape[1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"std": -1.0, "seed": 0}, "std"),
        ({"std": float("nan"), "seed": 0}, "std"),
        ({"std": float("inf"), "seed": 0}, "std"),
        ({"std": 1.0, "seed": -1}, "seed"),
        ({"std": 1.0, "seed": 2**32}, "seed"),
        ({"std": 1.0, "seed": 1.5}, "seed"),
        ({"std": 1.0, "seed": 0, "first_index": -2}, "first_index"),
    ],
)
def test_validation(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gaussian_noise(x, **kwargs)


def test_noise_sweep(x):
    shifts = noise_sweep()
    assert all(isinstance(s, Shift) for s in shifts)
    assert [s.name for s in shifts] == ["gaussian_noise"] * 7
    assert [s.severity for s in shifts] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert np.array_equal(shifts[0].apply(x), x)
    # One shared seed: each level scales the same noise draw.
    d1 = shifts[2].apply(x) - x
    d2 = shifts[4].apply(x) - x
    np.testing.assert_allclose(d2, 2 * d1, atol=1e-5)
    assert np.array_equal(shifts[2].apply(x), gaussian_noise(x, 1.0, seed=0))
    with pytest.raises(ValueError, match="stds"):
        noise_sweep((0.0, -1.0))
    with pytest.raises(ValueError, match="seed"):
        noise_sweep(seed=-3)


def test_shift_is_frozen():
    s = noise_sweep((1.0,))[0]
    with pytest.raises(AttributeError):
        s.severity = 2.0  # type: ignore[misc]
