"""Tests for BNNRegressor: HMC fits a 1-D curve, noise handling, target scaling, multi-output."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score

from bnn_shift.sklearn import BNNRegressor

NOISE = 0.1


@pytest.fixture(scope="module")
def sine():
    """y = sin(x) + N(0, 0.1^2) at 64 points of [-3, 3]."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, (64, 1))
    return x, np.sin(x[:, 0]) + NOISE * rng.normal(size=64)


@pytest.fixture(scope="module")
def line():
    """y = 2 x_0 - x_1 + N(0, 0.3^2) at 400 points."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 2))
    return x, 2 * x[:, 0] - x[:, 1] + 0.3 * rng.normal(size=400)


@pytest.mark.slow
def test_hmc_predictive_mean_fits_a_sine(sine):
    x, y = sine
    reg = BNNRegressor(
        "hmc", noise_std=NOISE, n_iterations=40, n_burnin=10, epochs=1000, random_state=0
    ).fit(x, y)
    grid = np.linspace(-2.5, 2.5, 101)[:, None]
    mean, std = reg.predict(grid, return_std=True)
    # 64 points with noise 0.1: a smooth fit's error is a fraction of the noise; a fit that
    # ignored the data (error 0.7) or chased the noise would miss these bounds
    assert np.sqrt(np.mean((mean - np.sin(grid[:, 0])) ** 2)) < 0.5 * NOISE
    assert np.max(np.abs(mean - np.sin(grid[:, 0]))) < 2 * NOISE
    # the predictive std is the noise plus the posterior's spread of the mean
    assert np.all(std >= NOISE) and np.mean(std) < 1.5 * NOISE
    assert reg.posterior_.attrs["likelihood"].startswith("gaussian")


def test_learned_noise_recovers_the_noise_level(line):
    x, y = line
    reg = BNNRegressor("map", hidden=(), epochs=500, learning_rate=0.05, random_state=0)
    reg.fit(x, y)
    (layer,) = reg.posterior_.draw(0).net.layers  # hidden=(): a plain linear MLP, one output
    assert layer.weight.shape == (1, 2) and layer.bias.shape == (1,)
    learned = float(np.exp(reg.posterior_.draws.log_noise[0, 0]) * reg.y_scale_[0])
    # the MAP noise is the residual RMS of a 3-parameter fit to 400 points: its relative
    # standard error is 1/sqrt(2n) = 3.5%
    assert abs(learned - 0.3) < 0.1 * 0.3
    _, std = reg.predict(x[:5], return_std=True)
    np.testing.assert_allclose(std, learned, rtol=0.05)  # a MAP point has no spread of means


@pytest.mark.parametrize("noise_std", ["learned", 0.3])
def test_predictions_follow_an_affine_change_of_units(line, noise_std):
    x, y = line
    a, b = 40.0, -7.0
    noise_in_new_units = noise_std if noise_std == "learned" else a * noise_std
    settings = {"hidden": (8,), "epochs": 100, "random_state": 0}
    base = BNNRegressor("map", noise_std=noise_std, **settings).fit(x, y)
    scaled = BNNRegressor("map", noise_std=noise_in_new_units, **settings).fit(x, a * y + b)
    mean, std = base.predict(x[:20], return_std=True)
    mean_scaled, std_scaled = scaled.predict(x[:20], return_std=True)
    # targets are standardised, so both fits solve the same problem up to float32 rounding
    np.testing.assert_allclose(mean_scaled, a * mean + b, rtol=1e-4, atol=1e-4 * a)
    np.testing.assert_allclose(std_scaled, a * std, rtol=1e-4)


def test_multi_output_and_column_targets(line):
    x, y = line
    targets = np.stack([y, -3 * y], axis=1)  # (n, 2)
    reg = BNNRegressor("map", noise_std=[0.3, 0.9], hidden=(8,), epochs=100, random_state=0)
    assert reg.fit(x, targets).predict(x[:7]).shape == (7, 2)
    assert reg.score(x, targets) > 0.95
    column = BNNRegressor("map", hidden=(8,), epochs=100, random_state=0).fit(x, y[:, None])
    assert column.predict(x[:7]).shape == (7, 1)


def test_cross_val_score_with_sgld(line):
    x, y = line
    reg = BNNRegressor("sgld", hidden=(8,), epochs=100, random_state=0)
    assert cross_val_score(reg, x, y, cv=2).min() > 0.95


def test_bad_noise_settings_name_the_problem(line):
    x, y = line
    with pytest.raises(ValueError, match='noise_std must be "learned" or a positive float'):
        BNNRegressor("map", noise_std="fixed").fit(x, y)
    with pytest.raises(ValueError, match="noise_std must be finite and > 0"):
        BNNRegressor("map", noise_std=-1.0).fit(x, y)
    with pytest.raises(ValueError, match="noise_std must be a float or 2 floats"):
        BNNRegressor("map", noise_std=[1.0, 2.0, 3.0]).fit(x, np.stack([y, y], axis=1))
