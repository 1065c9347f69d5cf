"""Tests for bnn_shift.sklearn.build: the networks, priors and seeds the estimators fit."""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np
import pytest

from bnn_shift.models import MLP, param_paths, partition_params
from bnn_shift.priors import ByPath, Gaussian
from bnn_shift.sklearn.build import LearnedNoise, build_model, build_prior, fit_seeds

X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)


@pytest.mark.parametrize(("hidden", "n_outputs"), [((5,), 1), ((), 1), ((5, 4), 3)])
def test_mlp_has_the_asked_outputs_and_mlp_parameter_paths(hidden, n_outputs):
    model = build_model("mlp", hidden, 3, n_outputs, jax.random.key(0))
    assert isinstance(model, MLP)  # one output and no hidden layer need no special network
    assert model(X[0]).shape == (n_outputs,)
    n_layers = len(hidden) + 1
    expected = [f"layers.{i}.{p}" for i in range(n_layers) for p in ("weight", "bias")]
    assert param_paths(partition_params(model)[0]) == expected


def test_learned_noise_appends_one_log_std_per_target():
    model = build_model("mlp", (5,), 3, 2, jax.random.key(0), learned_noise=True)
    assert isinstance(model, LearnedNoise)
    out = model(X[0])
    assert out.shape == (4,)
    np.testing.assert_array_equal(out[2:], 0.0)  # unit noise on standardised targets
    assert model.first_layer.path == "net.layers.0.weight"
    assert model.net.first_layer.path == "layers.0.weight"
    assert "log_noise" in param_paths(partition_params(model)[0])


def test_named_data_priors_land_on_the_first_layer_of_wrapped_networks():
    model = build_model("mlp", (5,), 3, 1, jax.random.key(0), learned_noise=True)
    prior = build_prior("empcov", X, 0.5, model)
    assert isinstance(prior, ByPath)
    assert np.isfinite(float(prior.log_prob(partition_params(model)[0])))


def test_build_prior_accepts_objects_and_callables_and_rejects_the_rest():
    model = build_model("mlp", (5,), 3, 2, jax.random.key(0))
    given = Gaussian(0.3)
    assert build_prior(given, X, 1.0, model) is given
    assert build_prior(lambda x: Gaussian(float(len(x))), X, 1.0, model).scale == 20.0
    with pytest.raises(ValueError, match="must return a bnn_shift Prior, got float"):
        build_prior(lambda x: 1.0, X, 1.0, model)
    with pytest.raises(ValueError, match="prior_scale must be finite and > 0"):
        build_prior("gaussian", X, 0.0, model)
    with pytest.raises(ValueError, match="unknown prior 'horseshoe'"):
        build_prior("horseshoe", X, 1.0, model)
    with pytest.raises(ValueError, match="prior must be a name"):
        build_prior(3, X, 1.0, model)


def test_data_priors_need_a_model_that_names_its_first_layer():
    model = build_model(lambda d, k, key: eqx.nn.Linear(d, k, key=key), (), 3, 2, jax.random.key(0))
    assert isinstance(build_prior("gaussian", X, 1.0, model), Gaussian)
    with pytest.raises(ValueError, match="Linear has no first_layer property"):
        build_prior("empcov", X, 1.0, model)
    wrapped = LearnedNoise(model, jax.numpy.zeros(2))
    with pytest.raises(ValueError, match="LearnedNoise has no first_layer property"):
        build_prior("empcov", X, 1.0, wrapped)


def test_build_model_rejects_unknown_names():
    with pytest.raises(ValueError, match='model must be "mlp" or a callable'):
        build_model("cnn", (5,), 3, 2, jax.random.key(0))


def test_fit_seeds_follow_random_state():
    assert fit_seeds(0) == fit_seeds(0) != fit_seeds(1)
    assert fit_seeds(np.random.RandomState(0)) == fit_seeds(0)
    assert fit_seeds(None) != fit_seeds(None)  # fresh entropy each fit
