"""Tests for bnn_shift.priors.Gaussian."""

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

from bnn_shift.priors import Gaussian

from .diff_precision import assert_diff_beats_naive

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
scales = st.floats(1e-2, 1e2, allow_nan=False, allow_infinity=False)


@settings(max_examples=20, deadline=None)
@given(shape_a=shapes, shape_b=shapes, scale=scales, seed=st.integers(0, 2**16))
def test_log_prob_matches_scipy(shape_a, shape_b, scale, seed):
    rng = np.random.default_rng(seed)
    params = {
        "a": rng.normal(0, 2 * scale, shape_a).astype(np.float32),
        "b": [rng.normal(0, 0.5 * scale, shape_b).astype(np.float32)],
    }
    expected = sum(
        scipy.stats.norm.logpdf(np.asarray(leaf, np.float64), scale=scale).sum()
        for leaf in jax.tree.leaves(params)
    )
    # jit: one small compile per example is much faster than eager dispatch of new shapes
    got = float(jax.jit(Gaussian(scale).log_prob)(params))
    # float32: each of <= 128 terms is O(10) with relative rounding ~1e-7
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-4)


@settings(max_examples=20, deadline=None)
@given(shape=shapes, scale=scales, seed=st.integers(0, 2**16))
def test_log_prob_diff_equals_difference_of_log_probs(shape, scale, seed):
    rng = np.random.default_rng(seed)
    old = {"w": rng.normal(0, scale, shape).astype(np.float32), "b": np.float32(0.3 * scale)}
    new = jax.tree.map(lambda x: x + rng.normal(0, 0.1 * scale, np.shape(x)), old)
    new = jax.tree.map(lambda x: np.asarray(x, np.float32), new)
    prior = Gaussian(scale)
    diff = float(jax.jit(prior.log_prob_diff)(new, old))
    log_prob = jax.jit(prior.log_prob)
    naive = float(log_prob(new) - log_prob(old))
    truth = (
        -0.5
        * sum(
            np.sum(np.float64(a) ** 2 - np.float64(b) ** 2)
            for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old))
        )
        / scale**2
    )
    assert diff == pytest.approx(truth, rel=1e-5, abs=1e-5)
    assert diff == pytest.approx(naive, rel=1e-4, abs=1e-3)


def test_log_prob_diff_is_precise_where_totals_cancel():
    prior = Gaussian(1.0)
    old = np.random.default_rng(0).normal(size=(1000, 1000))
    assert_diff_beats_naive(prior, old, lambda n, o: -0.5 * np.sum((n - o) * (n + o)))


def test_sample_structure_and_moments():
    scale = 0.3
    like = {"w": jnp.zeros((200, 250), jnp.float32), "b": [jnp.zeros(3, jnp.float16)]}
    draw = Gaussian(scale).sample(jax.random.key(0), like)
    assert jax.tree.structure(draw) == jax.tree.structure(like)
    assert draw["w"].shape == (200, 250) and draw["w"].dtype == jnp.float32
    assert draw["b"][0].shape == (3,) and draw["b"][0].dtype == jnp.float16
    w = np.asarray(draw["w"], np.float64).ravel()
    n = w.size  # 50,000 iid N(0, scale^2) draws
    # standard errors: mean scale/sqrt(n); sample variance scale^2*sqrt(2/(n-1)). 5 SE each.
    assert abs(w.mean()) < 5 * scale / math.sqrt(n)
    assert abs(w.var(ddof=1) - scale**2) < 5 * scale**2 * math.sqrt(2 / (n - 1))
    # excess kurtosis of a Gaussian is 0, SE sqrt(24/n)
    assert abs(scipy.stats.kurtosis(w)) < 5 * math.sqrt(24 / n)


def test_sample_leaves_are_independent_and_key_dependent():
    like = {"a": jnp.zeros(1000), "b": jnp.zeros(1000)}
    prior = Gaussian(1.0)
    d1 = prior.sample(jax.random.key(1), like)
    d2 = prior.sample(jax.random.key(2), like)
    assert not np.allclose(d1["a"], d1["b"])
    assert not np.allclose(d1["a"], d2["a"])
    # correlation of 1000 independent pairs has SE 1/sqrt(1000)
    assert abs(np.corrcoef(d1["a"], d1["b"])[0, 1]) < 5 / math.sqrt(1000)


@pytest.mark.parametrize("scale", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_scale_raises(scale):
    with pytest.raises(ValueError, match="scale"):
        Gaussian(scale)


def test_scale_and_describe():
    prior = Gaussian(0.1)
    assert prior.scale == 0.1
    assert "weight decay 100" in prior.describe()


def test_empty_params_raise():
    with pytest.raises(ValueError, match="no parameters"):
        Gaussian(1.0).log_prob({})
