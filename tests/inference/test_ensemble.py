"""Tests for bnn_shift.inference.deep_ensemble: one vmapped program equals separate map_fit
runs, members of a convex problem meet at its optimum, and the Posterior contract."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.data import load_digits
from bnn_shift.inference import Posterior, map_fit
from bnn_shift.inference.ensemble import deep_ensemble, member_seeds
from bnn_shift.models import MLP
from bnn_shift.priors import Gaussian

PRIOR_STD = 1.0


class LinearSoftmax(eqx.Module):
    """No-bias linear classifier (d,) -> (k,) logits: with a Gaussian prior, a strongly convex
    MAP objective."""

    weight: jax.Array  # (k, d)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.weight @ x


def grad_neg_log_posterior(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient (float64) of sum_i -log softmax(W x_i)[y_i] + |W|^2 / (2 s^2)."""
    logits = x @ w.T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return (p - np.eye(w.shape[0])[y]).T @ x + w / PRIOR_STD**2


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    y = np.repeat(np.arange(3), 30)
    x = centres[y] + rng.normal(size=(90, 3))
    return x.astype(np.float64), y


def test_convex_problem_members_meet_at_the_optimum(blobs):
    """f is mu-strongly convex with mu = 1/s^2, so |W - W*| <= |grad f(W)| / mu for every W:
    two members are within (|g_i| + |g_j|) / mu of each other, though they start far apart."""
    x, y = blobs
    starts = [LinearSoftmax(3.0 * jax.random.normal(jax.random.key(i), (3, 3))) for i in range(3)]
    post = deep_ensemble(
        starts,
        Gaussian(PRIOR_STD),
        x,
        y,
        n_epochs=600,
        optimizer="sgd",
        learning_rate=0.5,
        progress=False,
    )
    assert post.n_draws == 3 and post.attrs["init"] == "models"
    np.testing.assert_array_equal(post.draw_chain, [0, 1, 2])
    w = np.asarray(post.draws.weight, np.float64)  # (3, 3, 3)
    grads = [np.linalg.norm(grad_neg_log_posterior(wi, x, y)) for wi in w]
    assert max(grads) < 1e-4  # every member converged (float32 floor ~1e-6)
    mu = 1 / PRIOR_STD**2
    for i in range(3):
        for j in range(i):
            gap0 = np.linalg.norm(np.asarray(starts[i].weight - starts[j].weight))
            assert gap0 > 1.0  # they started apart ...
            bound = (grads[i] + grads[j]) / mu + 1e-6
            assert np.linalg.norm(w[i] - w[j]) <= bound  # ... and met
    losses = np.stack([post.stats[f"loss_member{i}"] for i in range(3)])  # (3, n_epochs)
    assert np.ptp(losses[:, 0]) > 0.1 and np.ptp(losses[:, -1]) < 1e-5
    np.testing.assert_allclose(post.stats["loss"], losses.mean(0), rtol=1e-6)


@pytest.fixture(scope="module")
def digits():
    return load_digits().subset(300, 50, seed=0)


def init_fn(key: jax.Array) -> MLP:
    return MLP(64, (16,), 10, key=key)


SETTINGS = {"n_epochs": 3, "batch_size": 100, "learning_rate": 0.01, "seed": 4}


@pytest.fixture(scope="module")
def digits_ensemble(digits):
    return deep_ensemble(
        init_fn(jax.random.key(0)),
        Gaussian(1.0),
        digits.x_train,
        digits.y_train,
        n_members=3,
        init_fn=init_fn,
        progress=False,
        **SETTINGS,
    )


def test_members_are_separate_map_fits(digits, digits_ensemble):
    """Member i is map_fit from init_fn(key(s_i)) with seed s_i (same minibatch order)."""
    post = digits_ensemble
    seeds = member_seeds(SETTINGS["seed"], 3)
    assert post.attrs["member_seeds"] == seeds == [12, 13, 14]
    w = post.draws.layers[0].weight  # (3, 16, 64)
    assert min(np.abs(w[i] - w[j]).max() for i in range(3) for j in range(i)) > 0.1
    for i in (0, 2):
        single = map_fit(
            init_fn(jax.random.key(seeds[i])),
            Gaussian(1.0),
            digits.x_train,
            digits.y_train,
            progress=False,
            **SETTINGS | {"seed": seeds[i]},
        )
        for got, want in zip(jax.tree.leaves(post.draws), jax.tree.leaves(single.draws)):
            np.testing.assert_allclose(got[i], want[0], rtol=1e-4, atol=1e-5)  # vmap rounding
        np.testing.assert_allclose(post.stats[f"loss_member{i}"], single.stats["loss"], rtol=1e-5)
    for i in range(3):  # every member of the one program trained
        loss = post.stats[f"loss_member{i}"]
        assert loss.shape == (3,) and loss[-1] < loss[0]


def test_predict_proba_and_save_load_round_trip(digits, digits_ensemble, tmp_path):
    post = digits_ensemble
    assert isinstance(post, Posterior) and not post.is_chain
    assert post.attrs["method"] == "deep_ensemble" and "seconds" in post.attrs
    proba = post.predict_proba(digits.x_test)
    assert proba.shape == (50, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    members = [np.asarray(jax.nn.softmax(jax.vmap(post.draw(i))(digits.x_test))) for i in range(3)]
    np.testing.assert_allclose(proba, np.mean(members, axis=0), rtol=1e-5, atol=1e-7)
    loaded = Posterior.load(post.save(tmp_path / "ensemble.nc"), init_fn(jax.random.key(9)))
    assert loaded.attrs == post.attrs
    assert set(loaded.stats) == {"loss", "loss_member0", "loss_member1", "loss_member2"}
    for k, v in post.stats.items():
        np.testing.assert_array_equal(loaded.stats[k], v)
    np.testing.assert_array_equal(loaded.draw_chain, [0, 1, 2])
    for a, b in zip(jax.tree.leaves(loaded.draws), jax.tree.leaves(post.draws)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(loaded.predict_proba(digits.x_test), proba, rtol=1e-6)


def small_model(key: int = 0) -> LinearSoftmax:
    return LinearSoftmax(jax.random.normal(jax.random.key(key), (3, 3)))


@pytest.mark.parametrize(
    ("model", "kwargs", "match"),
    [
        (small_model(), {}, "init_fn"),
        ([small_model(0), small_model(1)], {"init_fn": small_model}, "not both"),
        ([small_model(0), small_model(1)], {"n_members": 3}, "n_members=3"),
        ([], {}, "at least one"),
        (
            [small_model(0), LinearSoftmax(jnp.zeros((3, 4)))],
            {},
            "different architecture",
        ),
        (small_model(), {"init_fn": lambda k: 0}, "init_fn's model is int; give an equinox"),
        (None, {"init_fn": small_model}, "model is None; give an equinox module"),
        (None, {}, "model is None; give an equinox module"),
        ([small_model(), None], {}, "model 1 is NoneType; give an equinox module"),
        (small_model(), {"init_fn": small_model, "n_members": 0}, "n_members"),
        ([small_model()], {"optimizer": "lbfgs"}, "unknown optimizer"),
        ([small_model()], {"learning_rate": 0.0}, "learning_rate"),
        ([small_model()], {"n_epochs": 0}, "n_epochs"),
        ([small_model()], {"batch_size": 91}, "batch_size"),
    ],
)
def test_bad_arguments_raise(blobs, model, kwargs, match):
    x, y = blobs
    settings = {"n_epochs": 2, "learning_rate": 0.01} | kwargs
    with pytest.raises(ValueError, match=match):
        deep_ensemble(model, Gaussian(1.0), x, y, progress=False, **settings)


def test_bad_data_raise(blobs):
    x, y = blobs
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        deep_ensemble([small_model()], Gaussian(1.0), x, y + 1, n_epochs=2, learning_rate=0.01)
    with pytest.raises(ValueError, match="NaN"):
        deep_ensemble(
            [small_model()],
            Gaussian(1.0),
            np.full_like(x, np.nan),
            y,
            n_epochs=2,
            learning_rate=0.1,
        )
