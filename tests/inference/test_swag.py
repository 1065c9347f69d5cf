"""SWAG / MultiSWAG: the moments are exactly those of the recorded SGD iterates, and draws
follow the Gaussian they define."""

import equinox as eqx
import jax
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

from bnn_shift.data import load_digits
from bnn_shift.inference import map_fit
from bnn_shift.inference.minibatch import fit_epochs, prepare_epochs
from bnn_shift.inference.swag import SWAG, swag, swag_sample, swag_std
from bnn_shift.models import MLP, partition_params
from bnn_shift.priors import Gaussian, make_prior

N_EPOCHS, COLLECT_FROM, RANK = 12, 4, 5  # 8 iterates collected: the ring buffer wraps


@pytest.fixture(scope="module")
def data():
    return load_digits().subset(100, 30, seed=0)


@pytest.fixture(scope="module")
def recorded(data):
    """A SWAG run whose iterates at the collected epochs are also kept by the driver."""
    model = MLP(64, (6,), 10, key=jax.random.key(0))
    problem = prepare_epochs(model, Gaussian(0.3), data.x_train, data.y_train, batch_size=25)
    engine = SWAG(0.05, COLLECT_FROM, RANK)
    run, _ = fit_epochs(
        "swag", engine, problem, [problem.params], {},
        seeds=[3], n_epochs=N_EPOCHS, keep_epochs=range(COLLECT_FROM, N_EPOCHS), progress=False,
    )  # fmt: skip
    iterates = [params for _, _, params in sorted(run.draws, key=lambda d: d[0])]
    return jax.tree.map(lambda a: a[0], run.state), iterates


def test_moments_are_those_of_the_recorded_iterates(recorded):
    state, iterates = recorded
    assert int(state.n_collected) == len(iterates) == N_EPOCHS - COLLECT_FROM
    for j, leaf in enumerate(jax.tree.leaves(state.mean)):
        stack = np.stack([np.asarray(jax.tree.leaves(p)[j], np.float64) for p in iterates])
        np.testing.assert_allclose(leaf, stack.mean(0), rtol=1e-5, atol=1e-6)
        second = jax.tree.leaves(state.second_moment)[j]
        np.testing.assert_allclose(second, (stack**2).mean(0), rtol=1e-4, atol=1e-6)
        # deviation i = iterate i minus the running mean after it; slot (i mod RANK) keeps the last
        running = np.cumsum(stack, axis=0) / np.arange(1, len(stack) + 1).reshape(
            -1, *[1] * (stack.ndim - 1)
        )
        buffer = np.asarray(jax.tree.leaves(state.deviations)[j])
        for i in range(len(stack) - RANK, len(stack)):
            np.testing.assert_allclose(buffer[i % RANK], stack[i] - running[i], atol=1e-5)


def test_draws_follow_the_swag_gaussian(recorded):
    """4,000 draws: the sample sds match swag_std to Monte Carlo error (sd of a sample sd
    ~ sd / sqrt(2 n), 5 SE); the sample mean matches the SWAG mean."""
    state, _ = recorded
    keys = jax.random.split(jax.random.key(0), 4000)
    draws = jax.jit(jax.vmap(lambda k: swag_sample(state, k, RANK)))(keys)
    for draw, mean, std in zip(
        jax.tree.leaves(draws), jax.tree.leaves(state.mean), jax.tree.leaves(swag_std(state, RANK))
    ):
        d, m, s = (np.asarray(a, np.float64) for a in (draw, mean, std))
        np.testing.assert_array_less(np.abs(d.mean(0) - m), 5 * s / np.sqrt(4000) + 1e-7)
        np.testing.assert_array_less(np.abs(d.std(0) - s), 5 * s / np.sqrt(2 * 4000) + 1e-7)


@pytest.mark.slow
def test_swag_and_multiswag_end_to_end(data):
    model = MLP(64, (8,), 10, key=jax.random.key(1))
    settings = {"learning_rate": 0.05, "n_epochs": 8, "batch_size": 25, "progress": False}
    post = swag(model, Gaussian(0.3), data.x_train, data.y_train, n_samples=6, **settings)
    assert post.kind == "variational" and post.attrs["method"] == "swag"
    assert post.n_draws == 6 and post.attrs["n_collected"] == 4
    assert np.allclose(post.predict_proba(data.x_test).sum(-1), 1.0, atol=1e-5)
    multi = swag(
        model, Gaussian(0.3), data.x_train, data.y_train, n_samples=4, n_members=3,
        init_fn=lambda k: MLP(64, (8,), 10, key=k), **settings,
    )  # fmt: skip
    assert multi.attrs["method"] == "multiswag" and multi.n_draws == 12
    np.testing.assert_array_equal(multi.draw_chain, np.repeat([0, 1, 2], 4))


def test_bad_settings_are_named(data):
    args = (MLP(64, (4,), 10, key=jax.random.key(0)), Gaussian(0.3), data.x_train, data.y_train)
    with pytest.raises(ValueError, match="collect_from < n_epochs"):
        swag(*args, learning_rate=0.1, n_epochs=5, collect_from=5)
    with pytest.raises(ValueError, match="rank"):
        swag(*args, learning_rate=0.1, n_epochs=5, rank=1)
    with pytest.raises(ValueError, match="learning_rate"):
        swag(*args, learning_rate=-1.0, n_epochs=5)


def test_whitened_swag_runs_under_a_stiff_empcov_prior():
    """Iris plus a nearly dependent input (x5 = x1 + x2 + 1e-3 noise): EmpCov's prior sd along
    that direction is ~5e-4 on each unit's weights. SGD in the weights' own coordinates diverges
    at once there; in the whitened ones it runs, and its draws, mapped back to the weights, stay
    within the prior's spread along the stiff direction (the data cannot widen it)."""
    x, y = load_iris(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    noise = np.random.default_rng(0).normal(0, 1e-3, len(x))
    x = np.column_stack([x, x[:, 0] + x[:, 1] + noise]).astype(np.float32)
    model = MLP(5, (), 3, key=jax.random.key(0))
    prior = make_prior("empcov", model, x, 1.0, 1e-8)
    params, static = partition_params(model)
    draw = eqx.combine(prior.sample(jax.random.key(1), params), static)
    start = map_fit(
        draw, prior, x, y, n_epochs=500, learning_rate=0.05, progress=False, whiten_first_layer=True
    )
    stiff = np.linalg.eigh(np.cov(x.T))[1][:, 0]
    prior_weights = [prior.sample(jax.random.key(i), params).layers[0].weight for i in range(200)]
    prior_sd = np.std(np.asarray(prior_weights) @ stiff, axis=0)  # (3,) units
    settings = dict(learning_rate=0.05, n_epochs=20, batch_size=50, n_samples=200, progress=False)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        swag(start.draw(0), prior, x, y, **settings)
    post = swag(start.draw(0), prior, x, y, whiten_first_layer=True, **settings)
    assert post.attrs["whitened_first_layer"] and set(post.variational) == {"mean"}
    weights = np.asarray(post.draws.layers[0].weight)  # (200, 3, 5)
    np.testing.assert_array_less(np.std(weights @ stiff, axis=0), 3 * prior_sd)
    assert np.all(np.isfinite(post.stats["loss"]))
