"""Tests for bnn_shift.inference.numpyro_export: NumPyro's log density equals ours; NUTS and SVI
run on the exported model and their output becomes a Posterior."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pytest
from numpyro.contrib.module import random_eqx_module
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO, init_to_value
from numpyro.infer.autoguide import AutoNormal
from numpyro.infer.util import log_density

from bnn_shift.data import load_digits
from bnn_shift.inference import Posterior
from bnn_shift.inference.likelihood import categorical_loglik
from bnn_shift.inference.numpyro_export import (
    EmpCovDistribution,
    module_prior,
    numpyro_model,
    params_to_sites,
    posterior_from_numpyro,
    prior_distributions,
    to_params,
)
from bnn_shift.models import MLP, param_paths, partition_params
from bnn_shift.priors import (
    EmpCov,
    ExpNorm,
    Gaussian,
    Laplace,
    Prior,
    StudentT,
    SumFilter,
    Temperature,
    by_path,
)

N, D, K = 40, 6, 3


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    x[:, 2] = 0.5  # a dead feature: EmpCov gives it prior variance eps
    return x, rng.integers(0, K, N).astype(np.int32)


@pytest.fixture(scope="module")
def model() -> MLP:
    return MLP(D, (5,), K, key=jax.random.key(0))


def empcov(x: np.ndarray) -> EmpCov:
    return EmpCov.from_data(x, eps=1e-4)


PRIORS = {
    "gaussian": (lambda x: Gaussian(0.5), 1.0),
    "laplace": (lambda x: Laplace(0.3), 1.0),
    "student_t": (lambda x: StudentT(3.0, 0.2), 0.5),
    "empcov": (lambda x: by_path({"layers.0.weight": empcov(x), "*": Gaussian(0.5)}), 1.0),
    "by_path": (
        lambda x: by_path(
            {"layers.0.*": Laplace(0.4), "layers.1.weight": StudentT(4.0, 0.3), "*": Gaussian(1.0)}
        ),
        1.0,
    ),
    "tempered_expnorm": (
        lambda x: by_path(
            {"layers.0.weight": Temperature(ExpNorm(1.0, 0.5), 0.3), "*": Gaussian(0.5)}
        ),
        0.7,
    ),
}


class TinyConv(eqx.Module):
    """One 3x3 conv (2 filters) on 5x5x1 images, then a linear read-out."""

    conv: eqx.nn.Conv2d
    head: eqx.nn.Linear

    def __init__(self, key: jax.Array):
        k1, k2 = jax.random.split(key)
        self.conv = eqx.nn.Conv2d(1, 2, 3, key=k1)
        self.head = eqx.nn.Linear(18, K, key=k2)

    def __call__(self, image: jax.Array) -> jax.Array:  # (5, 5, 1) -> (K,)
        return self.head(jax.nn.relu(self.conv(jnp.moveaxis(image, -1, 0))).reshape(-1))


CONV_PRIORS = {
    "conv_empcov": (
        lambda x: by_path({"conv.weight": EmpCov.from_patches(x, 3, eps=1e-3), "*": Gaussian(1.0)}),
        1.0,
    ),
    "tempered_sumfilter_expnorm": (
        lambda x: Temperature(
            by_path({"conv.weight": SumFilter(0.5), "*": ExpNorm(3.0, 0.7)}), 2.0
        ),
        0.8,
    ),
}


def our_log_density(prior: Prior, params, static, x, y, temperature: float) -> jax.Array:
    return (
        jnp.sum(categorical_loglik(params, static, x, y)) + prior.log_prob(params)
    ) / temperature


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.normal(size=(N, 5, 5, 1)).astype(np.float32), rng.integers(0, K, N).astype(np.int32)


@pytest.mark.parametrize("name", list(PRIORS) + list(CONV_PRIORS))
def test_log_density_equals_ours(name, data, model, images):
    if name in CONV_PRIORS:
        (x, y), model = images, TinyConv(jax.random.key(0))
        make, temperature = CONV_PRIORS[name]
    else:
        x, y = data
        make, temperature = PRIORS[name]
    prior = make(x)
    params_like, static = partition_params(model)
    leaves, treedef = jax.tree.flatten(params_like)
    keys = jax.random.split(jax.random.key(1), len(leaves))  # a random point, not the init
    params = jax.tree.unflatten(
        treedef, [0.4 * jax.random.normal(k, a.shape) for k, a in zip(keys, leaves)]
    )
    fn = numpyro_model(model, prior, temperature=temperature)

    got, grad_got = jax.jit(jax.value_and_grad(lambda s: log_density(fn, (x, y), {}, s)[0]))(
        params_to_sites(params)
    )
    want, grad_want = jax.jit(
        jax.value_and_grad(lambda p: our_log_density(prior, p, static, x, y, temperature))
    )(params)
    np.testing.assert_allclose(float(got), float(want), rtol=2e-6, atol=1e-4)
    for path, g in zip(param_paths(params), jax.tree.leaves(grad_want)):
        np.testing.assert_allclose(grad_got[path], g, rtol=1e-4, atol=1e-4 * np.abs(g).max())


def test_sites_are_named_by_dotted_path(data, model):
    x, y = data
    fn = numpyro_model(model, PRIORS["tempered_expnorm"][0](x))
    trace = numpyro.handlers.trace(numpyro.handlers.substitute(fn, params_to_sites(model)))
    sites = trace.get_trace(x, y)
    params = [n for n, s in sites.items() if s["type"] == "sample" and not s["is_observed"]]
    assert params == param_paths(partition_params(model)[0])
    assert sites["y"]["is_observed"] and "log_prior_0" in sites


def test_empcov_distribution_matches_prior_and_samples_its_covariance(data):
    x, _ = data
    prior = empcov(x)
    d = EmpCovDistribution(prior, (4,))
    assert d.batch_shape == (4,) and d.event_shape == (D,)
    w = prior.sample(jax.random.key(0), jnp.zeros((4, D)))
    np.testing.assert_allclose(jnp.sum(d.log_prob(w)), prior.log_prob(w), rtol=1e-6)
    draws = np.asarray(d.sample(jax.random.key(1), (5000,))).reshape(-1, D)
    vecs, var = np.asarray(prior.eigvecs, np.float64), np.asarray(prior.prior_var, np.float64)
    np.testing.assert_allclose(np.cov(draws.T), (vecs * var) @ vecs.T, atol=0.05 * var.max())


def test_random_eqx_module_with_module_prior_matches_ours(data, model):
    x, y = data
    prior = by_path({"*": Gaussian(0.5), "layers.0.weight": empcov(x)})  # rules not in leaf order
    params_like, static = partition_params(model)
    params = prior.sample(jax.random.key(2), params_like)

    def fn(x, y):
        net = random_eqx_module("net", model, prior=module_prior(model, prior))
        logits = jax.vmap(net)(x)
        with numpyro.plate("data", len(x)):
            numpyro.sample("y", numpyro.distributions.Categorical(logits=logits), obs=y)

    sites = {
        f"net/{jax.tree_util.keystr(p)[1:]}": leaf
        for p, leaf in jax.tree_util.tree_leaves_with_path(params)
    }
    got = jax.jit(lambda s: log_density(fn, (x, y), {}, s)[0])(sites)
    want = our_log_density(prior, params, static, x, y, 1.0)
    np.testing.assert_allclose(float(got), float(want), rtol=2e-6)


def test_priors_without_a_distribution_are_refused_by_prior_distributions(data, model, images):
    with pytest.raises(TypeError, match="no numpyro distribution"):
        prior_distributions(model, PRIORS["tempered_expnorm"][0](data[0]))
    conv_prior = CONV_PRIORS["tempered_sumfilter_expnorm"][0](images[0])
    with pytest.raises(TypeError, match="no numpyro distribution"):
        prior_distributions(TinyConv(jax.random.key(0)), conv_prior)


def test_clear_errors(data, model):
    class Opaque(Prior):
        pass

    with pytest.raises(TypeError, match="cannot export Opaque"):
        numpyro_model(model, Opaque())
    with pytest.raises(TypeError, match="needs a bnn_shift Prior"):
        numpyro_model(model, numpyro.distributions.Normal(0.0, 1.0))
    with pytest.raises(ValueError, match="first-layer rows"):
        numpyro_model(model, empcov(data[0]))  # EmpCov on every leaf, biases included
    with pytest.raises(ValueError, match="temperature"):
        numpyro_model(model, Gaussian(1.0), temperature=0.0)
    with pytest.raises(KeyError, match=r"layers\.1\.bias"):
        to_params({"layers.0.weight": np.zeros((3, 5, D))}, model)


@pytest.fixture(scope="module")
def digits():
    """A tiny MLP on 100 digits under every kind of export: EmpCov, a tempered ExpNorm factor
    and a Gaussian, at T = 0.8; NUTS and SVI share it (and so numpyro's eager warm-up)."""
    ds = load_digits().subset(100, 20, seed=0)
    x, y = ds.flat("train"), ds.y_train
    model = MLP(x.shape[1], (4,), 10, key=jax.random.key(0))
    prior = by_path(
        {
            "layers.0.weight": EmpCov.from_data(x),
            "layers.1.weight": Temperature(ExpNorm(1.0, 0.5), 0.5),
            "*": Gaussian(0.5),
        }
    )
    return numpyro_model(model, prior, temperature=0.8), model, x, y, ds.flat("test")


@pytest.mark.slow
def test_nuts_runs_and_becomes_a_posterior(digits):
    fn, model, x, y, x_test = digits
    kernel = NUTS(fn, init_strategy=init_to_value(values=params_to_sites(model)), max_tree_depth=5)
    mcmc = MCMC(kernel, num_warmup=50, num_samples=50, progress_bar=False)
    mcmc.run(jax.random.key(0), x, y)

    post = posterior_from_numpyro(mcmc, model)
    assert isinstance(post, Posterior) and post.n_draws == 50
    assert post.stats["diverging"].shape == (50, 1)
    np.testing.assert_array_equal(post.draw_chain, np.zeros(50))
    probs = post.predict_proba(x_test)
    assert probs.shape == (len(x_test), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert "draws" in post.to_datatree()

    flat = posterior_from_numpyro(mcmc.get_samples(), model)  # a plain samples dict
    np.testing.assert_allclose(flat.predict_proba(x_test), probs, rtol=1e-5, atol=1e-6)
    first = to_params(mcmc.get_samples(), model)
    assert jax.tree.structure(first) == jax.tree.structure(partition_params(model)[0])


@pytest.mark.slow
def test_svi_autonormal_runs(digits):
    fn, model, x, y, _ = digits
    guide = AutoNormal(fn, init_loc_fn=init_to_value(values=params_to_sites(model)))
    svi = SVI(fn, guide, optax.adam(1e-2), Trace_ELBO())
    state = svi.init(jax.random.key(0), x, y)
    update = jax.jit(svi.update)
    losses = []
    for _ in range(5):
        state, loss = update(state, x, y)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    medians = guide.median(svi.get_params(state))
    assert set(medians) == set(param_paths(partition_params(model)[0]))
