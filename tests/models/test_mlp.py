"""Tests for bnn_shift.models: the MLP, the paper network and parameter naming."""

from __future__ import annotations

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnn_shift.models import MLP, combine_params, paper_mlp, param_paths, partition_params


def n_params(model) -> int:
    params, _ = partition_params(model)
    return sum(leaf.size for leaf in jax.tree.leaves(params))


@pytest.fixture(scope="module")
def mlp():
    return paper_mlp(key=jax.random.key(0))


def test_paper_mlp_parameter_count(mlp):
    # 784*256+256 + 256*256+256 + 256*10+10 = 200,960 + 65,792 + 2,570 (REFERENCE 1.6)
    assert n_params(mlp) == 269_322


def test_param_paths_name_every_layer(mlp):
    params, _ = partition_params(mlp)
    assert param_paths(params) == [
        "layers.0.weight",
        "layers.0.bias",
        "layers.1.weight",
        "layers.1.bias",
        "layers.2.weight",
        "layers.2.bias",
    ]
    shapes = [leaf.shape for leaf in jax.tree.leaves(params)]
    assert shapes == [(256, 784), (256,), (256, 256), (256,), (10, 256), (10,)]


def test_partition_combine_round_trip():
    model = MLP(5, (3,), 2, key=jax.random.key(1))
    params, static = partition_params(model)
    x = jnp.arange(5.0)
    assert np.array_equal(combine_params(params, static)(x), model(x))


@pytest.mark.parametrize(
    ("in_features", "hidden", "n_outputs"),
    [(0, (4,), 3), (4, (0,), 3), (4, (4, -1), 3), (4, (4,), 0), (4, (), 0), (-1, (), 1)],
)
def test_bad_sizes_raise(in_features, hidden, n_outputs):
    with pytest.raises(ValueError, match="MLP needs"):
        MLP(in_features, hidden, n_outputs, key=jax.random.key(0))


def test_linear_model_with_one_output():
    """hidden=() and one output: y = w.x + b, a Bayesian linear regression's network."""
    model = MLP(3, (), 1, key=jax.random.key(5))
    assert len(model.layers) == 1
    x = np.array([0.5, -1.0, 2.0], np.float32)
    expected = np.asarray(model.layers[0].weight) @ x + np.asarray(model.layers[0].bias)
    np.testing.assert_allclose(model(x), expected, rtol=1e-6)
    assert model(x).shape == (1,)


@settings(max_examples=25, deadline=None)
@given(
    in_features=st.integers(1, 12),
    hidden=st.lists(st.integers(1, 6), min_size=0, max_size=3),
    n_outputs=st.integers(1, 5),
    batch=st.integers(1, 4),
)
def test_forward_shapes(in_features, hidden, n_outputs, batch):
    # abstract evaluation only: compiling every random architecture would be slow
    def build_and_run(key, x):
        model = MLP(in_features, hidden, n_outputs, key=key)
        return model, model(x[0]), jax.vmap(model)(x)

    x = jax.ShapeDtypeStruct((batch, in_features), jnp.float32)
    model, one, many = eqx.filter_eval_shape(build_and_run, jax.random.key(0), x)
    assert one.shape == (n_outputs,)
    assert many.shape == (batch, n_outputs)
    sizes = [in_features, *hidden, n_outputs]
    shapes = [(layer.weight.shape, layer.bias.shape) for layer in model.layers]
    assert shapes == [((b, a), (b,)) for a, b in itertools.pairwise(sizes)]


def test_forward_matches_manual_relu_network():
    model = MLP(4, (3,), 2, key=jax.random.key(2))
    x = np.linspace(-1, 1, 4).astype(np.float32)
    w0, b0 = np.asarray(model.layers[0].weight), np.asarray(model.layers[0].bias)
    w1, b1 = np.asarray(model.layers[1].weight), np.asarray(model.layers[1].bias)
    expected = w1 @ np.maximum(w0 @ x + b0, 0) + b1
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-6)


def test_image_input_is_flattened(mlp):
    model = mlp
    image = jax.random.normal(jax.random.key(3), (28, 28, 1))
    logits = model(image)
    assert logits.shape == (10,)
    np.testing.assert_array_equal(logits, model(image.reshape(-1)))
    batch = jax.random.normal(jax.random.key(4), (3, 28, 28, 1))
    assert eqx.filter_jit(jax.vmap(model))(batch).shape == (3, 10)
