"""Tests for bnn_shift.inference.map_fit against scikit-learn's multinomial logistic regression."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from bnn_shift.inference import Posterior, map_fit
from bnn_shift.inference.target import make_target
from bnn_shift.models import MLP, partition_params
from bnn_shift.priors import Gaussian, make_prior

SCALE = 1.0  # Gaussian prior std s


class LinearSoftmax(eqx.Module):
    """No-bias linear classifier: one example (d,) -> (k,) logits."""

    linear: eqx.nn.Linear

    def __init__(self, d: int, k: int, *, key: jax.Array):
        self.linear = eqx.nn.Linear(d, k, use_bias=False, key=key)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(jnp.ravel(x))


@pytest.fixture(scope="module")
def iris():
    x, y = load_iris(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    return x.astype(np.float32), y


def neg_log_posterior_grad(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient in float64 of f(W) = sum_i -log softmax(W x_i)[y_i] + |W|^2 / (2 s^2)."""
    x = x.astype(np.float64)
    logits = x @ w.T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return (p - np.eye(w.shape[0])[y]).T @ x + w / SCALE**2


def neg_log_posterior(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    logits = x.astype(np.float64) @ w.T
    m = logits.max(1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(1, keepdims=True)))[:, 0]
    nll = np.sum(lse - logits[np.arange(len(y)), y])
    return float(nll + 0.5 * np.sum(w**2) / SCALE**2)


@pytest.fixture(scope="module")
def full_batch(iris):
    x, y = iris
    model = LinearSoftmax(4, 3, key=jax.random.key(0))
    return map_fit(model, Gaussian(SCALE), x, y, n_epochs=2000, learning_rate=0.05, progress=False)


def test_map_equals_sklearn_logistic_regression(iris, full_batch):
    """sklearn minimises |W|^2/2 + C sum_i logloss_i; ours sum_i logloss_i + |W|^2/(2 s^2):
    the same minimiser when C = s^2. f is mu-strongly convex with mu = 1/s^2 (the prior term;
    the log-loss Hessian is PSD), so any W satisfies |W - W*| <= |grad f(W)| / mu. Both
    solutions are therefore within (|g_ours| + |g_sklearn|) / mu of each other."""
    x, y = iris
    sk = LogisticRegression(C=SCALE**2, fit_intercept=False, tol=1e-12, max_iter=100_000)
    sk.fit(x.astype(np.float64), y)
    ours = np.asarray(full_batch.draws.linear.weight[0], np.float64)  # (3, 4)
    assert full_batch.n_draws == 1
    g_ours = np.linalg.norm(neg_log_posterior_grad(ours, x, y))
    g_sk = np.linalg.norm(neg_log_posterior_grad(sk.coef_, x, y))
    mu = 1 / SCALE**2
    assert g_ours < 1e-3  # Adam converged: W is within 1e-3 of the optimum
    bound = (g_ours + g_sk) / mu + 1e-9
    assert np.linalg.norm(ours - sk.coef_) <= bound
    assert np.abs(sk.coef_).max() > 0.5  # a non-trivial solution


def test_loss_is_the_mean_negative_log_posterior(iris, full_batch):
    x, y = iris
    w = np.asarray(full_batch.draws.linear.weight[0], np.float64)
    n, n_params = len(y), w.size
    # -(log lik + normalised log prior) / n; the prior's normaliser is n_params*log(2 pi s^2)/2
    expected = (neg_log_posterior(w, x, y) + 0.5 * n_params * math.log(2 * math.pi * SCALE**2)) / n
    loss = full_batch.stats["loss"]
    assert loss.shape == (2000,)
    # the last epoch's loss is taken one (tiny, end of cosine schedule) step before W
    assert loss[-1] == pytest.approx(expected, rel=1e-5)
    assert loss[0] > loss[-1]


def test_minibatch_path_runs(iris):
    x, y = iris
    post = map_fit(
        LinearSoftmax(4, 3, key=jax.random.key(0)),
        Gaussian(SCALE),
        x,
        y,
        n_epochs=30,
        batch_size=32,
        learning_rate=0.05,
        seed=1,
        progress=False,
    )
    assert isinstance(post, Posterior)
    assert post.attrs["batch_size"] == 32 and post.attrs["method"] == "map"
    loss = post.stats["loss"]
    assert loss.shape == (30,) and np.all(np.isfinite(loss))
    assert loss[-1] < 0.8 * loss[0]
    w = np.asarray(post.draws.linear.weight[0], np.float64)
    w0 = np.asarray(LinearSoftmax(4, 3, key=jax.random.key(0)).linear.weight, np.float64)
    assert neg_log_posterior(w, x, y) < neg_log_posterior(w0, x, y)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 151}, "batch_size"),
        ({"optimizer": "rmsprop"}, "unknown optimizer"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": -1e-3}, "learning_rate"),
        ({"n_epochs": 0}, "n_epochs"),
    ],
)
def test_bad_settings_raise(iris, kwargs, match):
    x, y = iris
    with pytest.raises(ValueError, match=match):
        map_fit(
            LinearSoftmax(4, 3, key=jax.random.key(0)),
            Gaussian(1.0),
            x,
            y,
            progress=False,
            **kwargs,
        )


def test_bad_data_raise(iris):
    x, y = iris
    model = LinearSoftmax(4, 3, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        map_fit(model, Gaussian(1.0), x, np.where(y == 0, 3, y), progress=False)
    x_nan = x.copy()
    x_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        map_fit(model, Gaussian(1.0), x_nan, y, progress=False)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_diverging_loss_raises_floating_point_error(iris, optimizer):
    # lr = 1e30 sends the weights to ~1e30 in one step; the prior term |W|^2 overflows
    # float32 to inf at the next evaluation, deterministically.
    x, y = iris
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        map_fit(
            LinearSoftmax(4, 3, key=jax.random.key(0)),
            Gaussian(1.0),
            x,
            y,
            n_epochs=5,
            learning_rate=1e30,
            optimizer=optimizer,
            progress=False,
        )


def _empcov_problem(x):
    model = MLP(x.shape[1], (), 3, key=jax.random.key(0))  # linear softmax with a bias
    return model, make_prior("empcov", model, x, 1.0, 1e-8)


def _objective(model, prior, params, x, y) -> float:
    """-(log likelihood + log prior) in the model's own coordinates."""
    target, _, xs, ys = make_target(model, prior, x, y)
    return -float(target.log_joint(params, (jnp.asarray(xs), jnp.asarray(ys))))


def test_whitened_map_optimises_the_same_objective(iris):
    """Strictly convex objective: plain and whitened optimisation reach one mode, returned in
    the model's coordinates, with the user's prior recorded."""
    x, y = iris
    model, prior = _empcov_problem(x)
    fits = [
        map_fit(
            model,
            prior,
            x,
            y,
            n_epochs=3000,
            learning_rate=0.05,
            progress=False,
            whiten_first_layer=whiten,
        )
        for whiten in (False, True)
    ]
    for a, b in zip(jax.tree.leaves(fits[0].draws), jax.tree.leaves(fits[1].draws)):
        np.testing.assert_allclose(a, b, atol=2e-3)
    assert fits[1].attrs["whitened_first_layer"] and fits[1].attrs["prior"] == prior.describe()


def test_whitened_map_reaches_a_stiff_empcov_mode_adam_misses(iris):
    """A nearly dependent input (x5 = x1 + x2 + 1e-3 noise) gives EmpCov a direction of prior
    variance ~1e-6. From a prior draw (a network initialisation lies far off EmpCov's support in
    such directions), plain Adam's per-coordinate steps overshoot along it; the whitened
    optimiser, where the prior is isotropic, does not."""
    x, y = iris
    noise = np.random.default_rng(0).normal(0, 1e-3, len(x))
    x = np.column_stack([x, x[:, 0] + x[:, 1] + noise]).astype(np.float32)
    model, prior = _empcov_problem(x)
    params, static = partition_params(model)
    start = eqx.combine(prior.sample(jax.random.key(1), params), static)
    objective = {}
    for whiten in (False, True):
        post = map_fit(start, prior, x, y, n_epochs=500, learning_rate=0.05, progress=False,
                       whiten_first_layer=whiten)  # fmt: skip
        params, _ = partition_params(post.draw(0))
        objective[whiten] = _objective(model, prior, params, x, y)
    assert objective[True] < objective[False] - 1.0
