"""Tests for bnn_shift.shift.predictors: model averages and per-draw probabilities."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from bnn_shift.inference import posterior as posterior_module
from bnn_shift.inference.posterior import Posterior, stack_draws
from bnn_shift.models import MLP
from bnn_shift.models.params import partition_params
from bnn_shift.shift import evaluate, noise_sweep, predict
from bnn_shift.shift.predictors import has_draws

N_DRAWS, N, K = 4, 9, 3
X = np.random.default_rng(0).normal(size=(N, 2, 3, 1)).astype(np.float32)
Y = np.arange(N) % K


def _posterior(n_draws: int = N_DRAWS) -> Posterior:
    model = MLP(6, (5,), K, key=jax.random.key(0))
    params, static = partition_params(model)
    keys = jax.random.split(jax.random.key(1), n_draws)
    draws = [jax.tree.map(lambda p, k=k: p + jax.random.normal(k, p.shape), params) for k in keys]
    return Posterior(static, stack_draws(draws))


def test_posterior_per_draw_probabilities():
    post = _posterior()
    assert has_draws(post)
    draws = predict(post, X, per_draw=True)
    assert draws.shape == (N_DRAWS, N, K) and draws.dtype == np.float64
    for i in range(N_DRAWS):
        logits = np.asarray(jax.vmap(post.draw(i))(X), np.float64)
        expected = np.exp(logits - logits.max(1, keepdims=True))
        expected /= expected.sum(1, keepdims=True)
        np.testing.assert_allclose(draws[i], expected, rtol=1e-5, atol=1e-6)
    # The model average agrees with Posterior.predict_proba to float32 round-off.
    np.testing.assert_allclose(draws.mean(0), post.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(predict(post, X), post.predict_proba(X), atol=0)


def test_posterior_draws_are_chunked(monkeypatch):
    post = _posterior()
    whole = predict(post, X, per_draw=True)
    monkeypatch.setattr(posterior_module, "DRAW_CHUNK_FLOATS", N_DRAWS * K * 2)  # 2 rows a chunk
    np.testing.assert_allclose(predict(post, X, per_draw=True), whole, atol=1e-7)
    np.testing.assert_allclose(predict(post, X, batch_size=4, per_draw=True), whole, atol=1e-7)


def test_evaluate_posterior_mutual_information():
    table = evaluate(
        {"hmc": _posterior(), "map": _posterior(1)},
        (X, Y),
        noise_sweep((0.0,)),
        metrics=["mutual_info", "accuracy"],
        progress=False,
    )
    v = table.set_index(["method", "metric"])["value"]
    assert v[("hmc", "mutual_info")] > 0.01  # four different networks disagree
    assert v[("map", "mutual_info")] == pytest.approx(0.0, abs=1e-12)  # one draw: no spread


def test_point_predictors():
    class Point:
        def predict_proba(self, x):
            return np.full((x.shape[0], K), 1 / K, np.float32)

    assert not has_draws(Point())
    out = predict(Point(), X, per_draw=True)
    assert out.shape == (N, K) and out.dtype == np.float64

    class Bad:
        def predict_proba(self, x):
            return np.ones((x.shape[0] + 1, K)) / K

    with pytest.raises(ValueError, match=r"returned shape \(10, 3\) for 9 inputs"):
        predict(Bad(), X)
