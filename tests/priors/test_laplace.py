"""Tests for bnn_shift.priors.Laplace."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bnn_shift.inference import HMC, Likelihood, Target
from bnn_shift.priors import Gaussian, Temperature, by_path
from bnn_shift.priors.laplace import Laplace

from .diff_precision import assert_diff_beats_naive

# few distinct shapes, so eager per-shape compilations are reused across examples
shapes = hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3)
scales = st.floats(1e-2, 1e2, allow_nan=False, allow_infinity=False)


@settings(max_examples=10, deadline=None)
@given(shape_a=shapes, shape_b=shapes, scale=scales, seed=st.integers(0, 2**16))
def test_log_prob_matches_scipy(shape_a, shape_b, scale, seed):
    rng = np.random.default_rng(seed)
    params = {
        "a": rng.normal(0, 2 * scale, shape_a).astype(np.float32),
        "b": [rng.normal(0, 0.5 * scale, shape_b).astype(np.float32)],
    }
    b = scale / math.sqrt(2)
    expected = sum(
        scipy.stats.laplace.logpdf(np.asarray(leaf, np.float64), scale=b).sum()
        for leaf in jax.tree.leaves(params)
    )
    got = float(Laplace(scale).log_prob(params))
    # float32: each of <= 128 terms is O(10) with relative rounding ~1e-7
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-4)


@settings(max_examples=10, deadline=None)
@given(shape=shapes, scale=scales, seed=st.integers(0, 2**16))
def test_log_prob_diff_equals_difference_of_log_probs(shape, scale, seed):
    rng = np.random.default_rng(seed)
    old = {"w": rng.normal(0, scale, shape).astype(np.float32), "b": np.float32(0.3 * scale)}
    new = jax.tree.map(
        lambda x: np.asarray(x + rng.normal(0, 0.1 * scale, np.shape(x)), np.float32), old
    )
    prior = Laplace(scale)
    diff = float(prior.log_prob_diff(new, old))
    naive = float(prior.log_prob(new) - prior.log_prob(old))
    truth = -sum(
        np.sum(np.abs(np.float64(a)) - np.abs(np.float64(b)))
        for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old))
    ) / (scale / math.sqrt(2))
    assert diff == pytest.approx(truth, rel=1e-5, abs=1e-5)
    assert diff == pytest.approx(naive, rel=1e-4, abs=1e-3)


def test_log_prob_diff_is_precise_where_totals_cancel():
    prior = Laplace(1.0)
    old = np.random.default_rng(0).laplace(size=(1000, 1000))
    assert_diff_beats_naive(prior, old, lambda n, o: -np.sum(np.abs(n) - np.abs(o)) / prior.b)


def test_sample_structure_and_moments():
    scale = 0.3
    like = {"w": jnp.zeros((200, 250), jnp.float32), "b": [jnp.zeros(3, jnp.float16)]}
    draw = Laplace(scale).sample(jax.random.key(0), like)
    assert jax.tree.structure(draw) == jax.tree.structure(like)
    assert draw["w"].dtype == jnp.float32 and draw["b"][0].dtype == jnp.float16
    w = np.asarray(draw["w"], np.float64).ravel()
    n = w.size  # 50,000 iid Laplace(0, b) draws, Var = 2b^2 = scale^2, E x^4 = 24 b^4 = 6 scale^4
    b = scale / math.sqrt(2)
    # standard errors: mean scale/sqrt(n); sample variance sqrt((6-1) scale^4/n); E|x| = b with
    # Var|x| = b^2, so SE b/sqrt(n). 5 SE each.
    assert abs(w.mean()) < 5 * scale / math.sqrt(n)
    assert abs(w.var(ddof=1) - scale**2) < 5 * math.sqrt(5 / n) * scale**2
    assert abs(np.abs(w).mean() - b) < 5 * b / math.sqrt(n)


@pytest.mark.parametrize("scale", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_scale_raises(scale):
    with pytest.raises(ValueError, match="scale"):
        Laplace(scale)


def test_scale_b_and_describe():
    prior = Laplace(0.1)
    assert prior.scale == 0.1 == Gaussian(0.1).scale
    # REFERENCE: b = sqrt(1/(2 wd)) with wd = 1/scale^2
    assert prior.b == pytest.approx(math.sqrt(1 / (2 * 100)))
    assert "Laplace" in prior.describe() and "weight decay 100" in prior.describe()


def test_by_path_and_temperature():
    params = {"layer": {"weight": jnp.linspace(-1, 1, 6).reshape(2, 3), "bias": jnp.ones(2)}}
    lap, gauss = Laplace(0.5), Gaussian(0.2)
    composed = by_path({"layer.weight": lap, "*": gauss})
    expected = lap.log_prob(params["layer"]["weight"]) + gauss.log_prob(params["layer"]["bias"])
    assert float(composed.log_prob(params)) == pytest.approx(float(expected), rel=1e-6)
    draw = jax.jit(composed.sample)(jax.random.key(0), params)
    assert jax.tree.structure(draw) == jax.tree.structure(params)
    cold = Temperature(lap, 0.25)
    assert float(cold.log_prob(params)) == pytest.approx(4 * float(lap.log_prob(params)), rel=1e-6)
    new = jax.tree.map(lambda x: x + 0.1, params)
    assert float(cold.log_prob_diff(new, params)) == pytest.approx(
        4 * float(lap.log_prob_diff(new, params)), rel=1e-6
    )
    assert cold.trajectory_scale == pytest.approx(0.25)


def test_hmc_with_zero_likelihood_samples_the_laplace_variance():
    # Prior-only HMC from a too-narrow start must reach the second moment scale^2 = 1.
    # Not from exact zeros: leapfrog leaving the kink at 0 has a one-sided energy error
    # h|p|/(2b) per zero coordinate, so an all-zero start is rejected (about -68 at h = 0.1).
    # Each kink crossing adds O(h) energy error, so h is small for 500 coordinates.
    prior, n_coords = Laplace(1.0), 500
    params = {"w": 0.5 * jax.random.normal(jax.random.key(1), (n_coords,))}
    data = (jnp.zeros((1, 1)), jnp.zeros(1))
    nothing = Likelihood(
        "zero", loglik=lambda p, static, x, y: jnp.zeros(len(x)), predict=None, check=None
    )
    target = Target(nothing, prior, None, 1.0, 1)
    engine = HMC.for_target(target, params, step_size=0.03, n_steps=53)

    def one(state, key):
        state, info = engine.step(target, key, state, data, jnp.asarray(False))
        return state, (jnp.mean(state.position["w"] ** 2), info.acceptance_rate)

    _, (second, accept) = jax.jit(lambda s, k: jax.lax.scan(one, s, k))(
        engine.init(target, params, data), jax.random.split(jax.random.key(0), 330)
    )
    second = np.asarray(second[30:], np.float64)  # 30 burn-in iterations, then 300 kept
    assert np.mean(np.asarray(accept)) > 0.6
    # MC error: batch means over 10 batches of 30 iterations absorb the chain's autocorrelation;
    # each iteration's value is a mean over 500 coordinates (SE sqrt(5/500) = 0.1 if iid).
    batches = second.reshape(10, 30).mean(axis=1)
    se = batches.std(ddof=1) / math.sqrt(10)
    assert abs(second.mean() - 1.0) < 5 * se
