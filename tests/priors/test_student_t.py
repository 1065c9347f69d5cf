"""Tests for bnn_shift.priors.StudentT."""

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

from bnn_shift.priors import Gaussian, Temperature, by_path
from bnn_shift.priors.laplace import Laplace
from bnn_shift.priors.student_t import StudentT

from .diff_precision import assert_diff_beats_naive

# few distinct shapes, so eager per-shape compilations are reused across examples
shapes = hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3)
scales = st.floats(1e-2, 1e2, allow_nan=False, allow_infinity=False)
dfs = st.floats(0.5, 50.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=10, deadline=None)
@given(shape_a=shapes, shape_b=shapes, df=dfs, scale=scales, seed=st.integers(0, 2**16))
def test_log_prob_matches_scipy(shape_a, shape_b, df, scale, seed):
    rng = np.random.default_rng(seed)
    params = {
        "a": rng.normal(0, 3 * scale, shape_a).astype(np.float32),
        "b": [rng.normal(0, 0.5 * scale, shape_b).astype(np.float32)],
    }
    expected = sum(
        scipy.stats.t.logpdf(np.asarray(leaf, np.float64), df, scale=scale).sum()
        for leaf in jax.tree.leaves(params)
    )
    got = float(StudentT(df, scale).log_prob(params))
    # float32: each of <= 128 terms is O(10) with relative rounding ~1e-6 (lgamma, log1p)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-3)


@settings(max_examples=10, deadline=None)
@given(shape=shapes, df=dfs, scale=scales, seed=st.integers(0, 2**16))
def test_log_prob_diff_equals_difference_of_log_probs(shape, df, scale, seed):
    rng = np.random.default_rng(seed)
    old = {"w": rng.normal(0, 2 * scale, shape).astype(np.float32), "b": np.float32(0.3 * scale)}
    new = jax.tree.map(
        lambda x: np.asarray(x + rng.normal(0, 0.1 * scale, np.shape(x)), np.float32), old
    )
    prior = StudentT(df, scale)
    diff = float(prior.log_prob_diff(new, old))
    naive = float(prior.log_prob(new) - prior.log_prob(old))
    truth = sum(
        np.sum(
            scipy.stats.t.logpdf(np.float64(a), df, scale=scale)
            - scipy.stats.t.logpdf(np.float64(b), df, scale=scale)
        )
        for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old))
    )
    assert diff == pytest.approx(truth, rel=1e-5, abs=1e-5)
    assert diff == pytest.approx(naive, rel=1e-4, abs=1e-3)


def test_log_prob_diff_is_precise_where_totals_cancel():
    prior = StudentT(5.0, 1.0)
    old = np.random.default_rng(0).standard_t(5.0, size=(1000, 1000))
    assert_diff_beats_naive(
        prior, old, lambda n, o: -3.0 * np.sum(np.log1p(n**2 / 5.0) - np.log1p(o**2 / 5.0))
    )


def test_sample_median_absolute_value_heavy_tails():
    # df = 3: the variance of x^2 is infinite, so check a robust statistic. The median of |x| is
    # m = s * t.ppf(0.75, df); the sample median of n draws of |x| has SE 0.5/(sqrt(n) f(m)) with
    # f(m) = 2 t.pdf(m) the density of |x| at m. 5 SE.
    df, s = 3.0, 0.2
    draw = jax.jit(StudentT(df, s).sample)(jax.random.key(0), {"w": jnp.zeros((200, 250))})
    x = np.abs(np.asarray(draw["w"], np.float64).ravel())
    m = s * scipy.stats.t.ppf(0.75, df)
    se = 0.5 / (math.sqrt(x.size) * 2 * scipy.stats.t.pdf(m, df, scale=s))
    assert abs(np.median(x) - m) < 5 * se
    assert abs(np.median(np.asarray(draw["w"]))) < 5 * se  # symmetric about 0


@pytest.mark.parametrize(
    "make", [lambda s: Gaussian(s), lambda s: Laplace(s), lambda s: StudentT.matched(10.0, s)]
)
def test_matched_variance_equals_gaussian(make):
    # Gaussian(s), Laplace(s) and StudentT.matched(10, s) all have variance s^2.
    scale = 0.3
    prior = make(scale)
    assert prior.trajectory_scale == pytest.approx(scale, rel=1e-12)
    x = np.asarray(jax.jit(prior.sample)(jax.random.key(1), jnp.zeros(50_000)), np.float64)
    # SE of the sample variance is sqrt((E x^4 - s^4)/n); E x^4 / s^4 is 3 (Gaussian),
    # 6 (Laplace) and 3 (df-2)/(df-4) = 4 (t, df = 10), so use the largest, 6. 5 SE.
    assert abs(x.var() - scale**2) < 5 * math.sqrt(5 / x.size) * scale**2


def test_scale_parameter_and_std():
    assert StudentT(5.0, 1.0).scale == 1.0
    assert (
        StudentT(5.0, 1.0).std
        == StudentT(5.0, 1.0).trajectory_scale
        == pytest.approx(math.sqrt(5 / 3))
    )
    assert StudentT(2.0, 0.7).std == math.inf
    assert StudentT(2.0, 0.7).trajectory_scale == 0.7  # infinite variance: the scale parameter
    matched = StudentT.matched(5.0, 0.1)
    assert matched.s == pytest.approx(0.1 * math.sqrt(3 / 5))
    assert "infinite variance" in StudentT(1.0, 1.0).describe()
    assert "df=5" in matched.describe()


@pytest.mark.parametrize(
    ("df", "scale", "match"),
    [
        (0.0, 1.0, "df"),
        (-1.0, 1.0, "df"),
        (float("nan"), 1.0, "df"),
        (5.0, 0.0, "scale"),
        (5.0, float("inf"), "scale"),
    ],
)
def test_bad_arguments_raise(df, scale, match):
    with pytest.raises(ValueError, match=match):
        StudentT(df, scale)


@pytest.mark.parametrize("df", [1.0, 2.0])
def test_matched_needs_finite_variance(df):
    with pytest.raises(ValueError, match="df > 2"):
        StudentT.matched(df, 0.1)


def test_by_path_and_temperature():
    params = {"layer": {"weight": jnp.linspace(-1, 1, 6).reshape(2, 3), "bias": jnp.ones(2)}}
    t, gauss = StudentT(5.0, 0.5), Gaussian(0.2)
    composed = by_path({"layer.weight": t, "*": gauss})
    expected = t.log_prob(params["layer"]["weight"]) + gauss.log_prob(params["layer"]["bias"])
    assert float(composed.log_prob(params)) == pytest.approx(float(expected), rel=1e-6)
    new = jax.tree.map(lambda x: x + 0.1, params)
    cold = Temperature(t, 0.5)
    assert float(cold.log_prob(params)) == pytest.approx(2 * float(t.log_prob(params)), rel=1e-6)
    assert float(cold.log_prob_diff(new, params)) == pytest.approx(
        2 * float(t.log_prob_diff(new, params)), rel=1e-6
    )
