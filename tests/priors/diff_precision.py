"""Shared check: a prior's termwise log_prob_diff stays exact where float32 totals cancel."""

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
import pytest


def assert_diff_beats_naive(
    prior, old: np.ndarray, truth: Callable[[np.ndarray, np.ndarray], float]
) -> None:
    """old (1000, 1000): 10^6 parameters whose log prior total is ~1e6, where float32 spacing
    (~0.1) swamps the change made by moving 10 of them by 1e-3. truth(new64, old64) is the exact
    float64 difference. The termwise difference keeps only the 10 moved terms (relative error
    ~1e-6 each), so it must match the truth and beat the naive difference of totals 100-fold."""
    old_w = {"w": jnp.asarray(old, jnp.float32)}
    new_w = {"w": old_w["w"].at[0, :10].add(1e-3)}
    exact = truth(np.asarray(new_w["w"], np.float64), np.asarray(old_w["w"], np.float64))
    assert abs(exact) > 1e-4  # the change is real
    ours = float(prior.log_prob_diff(new_w, old_w))
    naive = float(prior.log_prob(new_w) - prior.log_prob(old_w))
    assert ours == pytest.approx(exact, rel=1e-4)
    assert abs(naive - exact) > 100 * abs(ours - exact)
