"""A dense EmpCov first layer sampled in whitened coordinates: the same model, prior and chain."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.data import load_digits
from bnn_shift.inference import hmc
from bnn_shift.inference.whitening import find_whitening
from bnn_shift.models import MLP, LeNet5, combine_params, partition_params
from bnn_shift.priors import EmpCov, Gaussian, by_path, make_prior


@pytest.fixture(scope="module")
def digits():
    return load_digits().subset(300, 100, seed=0)


@pytest.fixture(scope="module")
def model():
    return MLP(64, (16,), 10, key=jax.random.key(0))


def test_applies_to_a_dense_empcov_first_layer_only(digits, model):
    params, _ = partition_params(model)
    assert find_whitening(model, make_prior("empcov", model, digits.x_train, 0.1, 1e-8), params)
    assert find_whitening(model, Gaussian(0.1), params) is None
    assert (
        find_whitening(model, make_prior("gaussian", model, digits.x_train, 0.1, 1e-8), params)
        is None
    )
    lenet = LeNet5(1, 10, image_size=28, key=jax.random.key(0))
    images = np.random.default_rng(0).normal(size=(50, 28, 28, 1)).astype(np.float32)
    conv_prior = make_prior("empcov", lenet, images, 0.1, 1e-8)
    # a conv first layer keeps the preconditioned path (overlapping patches: no one rotation)
    assert find_whitening(lenet, conv_prior, partition_params(lenet)[0]) is None
    empcov = EmpCov.from_data(digits.x_train, scale=0.1)
    rules = {"layers.1.weight": Gaussian(0.2), "layers.0.weight": empcov, "*": Gaussian(0.1)}
    on_hidden = by_path(rules)
    whitening, prior = find_whitening(model, on_hidden, params)
    assert whitening.leaf == jax.tree.leaves(params).index(params.layers[0].weight)
    assert isinstance(prior.priors[1], Gaussian) and prior.priors[1].scale == pytest.approx(
        empcov.scale
    )


def test_whitened_coordinates_give_the_same_network_and_prior(digits, model):
    params, static = partition_params(model)
    prior = make_prior("empcov", model, digits.x_train, 0.1, 1e-8)
    whitening, z_prior = find_whitening(model, prior, params)
    z = z_prior.sample(jax.random.key(1), params)
    theta = whitening.to_params(z)
    back = whitening.to_whitened(theta)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(z)):
        np.testing.assert_allclose(a, b, atol=2e-4, rtol=1e-3)
    x = digits.x_train[:50]
    full = jax.vmap(combine_params(theta, static))(jnp.asarray(x))
    rotated = jax.vmap(combine_params(z, static))(jnp.asarray(whitening.rotate(x)))
    np.testing.assert_allclose(rotated, full, atol=1e-4, rtol=1e-4)
    # the EmpCov density of theta and the Gaussian one of z differ by a constant (log |A|)
    z2 = z_prior.sample(jax.random.key(2), params)
    diff_theta = prior.log_prob(whitening.to_params(z2)) - prior.log_prob(theta)
    diff_z = z_prior.log_prob(z2) - z_prior.log_prob(z)
    assert float(diff_theta) == pytest.approx(float(diff_z), rel=1e-3)


def test_the_whitened_chain_follows_the_preconditioned_one(digits, model):
    """Same seed, same chain up to float rounding: predictions and traces agree closely."""
    prior = make_prior("empcov", model, digits.x_train, 0.1, 1e-8)
    runs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 6 iterations have not converged
        for whiten in (True, False):
            runs[whiten] = hmc(
                model, prior, digits.x_train, digits.y_train,
                step_size=1e-3, n_iterations=6, n_burnin=2, n_chains=2, progress=False,
                eval_sets={"test": (digits.x_test, digits.y_test)}, whiten_first_layer=whiten,
            )  # fmt: skip
    fast, slow = runs[True], runs[False]
    assert fast.attrs["whitened_first_layer"] and "whitened_first_layer" not in slow.attrs
    assert fast.attrs["prior"] == slow.attrs["prior"]  # the user's prior is what is recorded
    np.testing.assert_allclose(fast.predictions["test"], slow.predictions["test"], atol=2e-3)
    np.testing.assert_allclose(
        fast.trace["log_likelihood"], slow.trace["log_likelihood"], rtol=1e-3
    )
    for a, b in zip(jax.tree.leaves(fast.draws), jax.tree.leaves(slow.draws)):
        np.testing.assert_allclose(a, b, atol=1e-2)
