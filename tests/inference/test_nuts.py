"""BlackJAX NUTS with window adaptation behind the Posterior interface."""

import arviz as az
import equinox as eqx
import jax
import numpy as np
import pytest

from bnn_shift.data import load_digits
from bnn_shift.inference.nuts import nuts
from bnn_shift.models import MLP
from bnn_shift.priors import Gaussian


class Linear(eqx.Module):
    layer: eqx.nn.Linear

    def __call__(self, x):
        return self.layer(x)


def test_nuts_samples_the_prior_when_the_data_say_nothing():
    """All-zero inputs make the likelihood constant in the weights: the posterior is the prior
    N(0, 0.5^2) exactly, so draws' mean and variance must match it within MC error."""
    model = Linear(eqx.nn.Linear(3, 2, use_bias=False, key=jax.random.key(0)))
    x, y = np.zeros((10, 3), np.float32), np.arange(10) % 2
    post = nuts(
        model, Gaussian(0.5), x, y, n_warmup=200, n_samples=400, n_chains=2, seed=1, progress=False
    )
    flat = np.asarray(post.draws.layer.weight).reshape(-1, 6)
    w = np.stack([flat[post.draw_chain == c] for c in range(2)])  # (chain, draw, coordinate)
    ess = np.asarray(az.ess(w.transpose(0, 1, 2)[..., 0]))  # ESS of one coordinate, both chains
    assert ess > 200
    # 6 coordinates; SE of the mean 0.5/sqrt(ESS), of the variance 0.25*sqrt(2/ESS); 5 SE.
    flat = w.reshape(-1, 6)
    assert np.all(np.abs(flat.mean(0)) < 5 * 0.5 / np.sqrt(ess))
    assert np.all(np.abs(flat.var(0) / 0.25 - 1) < 5 * np.sqrt(2 / ess))
    assert post.stats["acceptance_rate"].shape == (600, 2)  # warmup rows first
    assert post.stats["diverging"][200:].sum() == 0  # after warmup


def test_nuts_on_digits_gives_a_usable_posterior(tmp_path):
    data = load_digits().subset(150, 40, seed=0)
    model = MLP(64, (4,), 10, key=jax.random.key(0))
    post = nuts(
        model,
        Gaussian(0.5),
        data.x_train,
        data.y_train,
        n_warmup=60,
        n_samples=20,
        max_depth=6,
        eval_sets={"test": data.x_test},
        progress=False,
    )
    assert post.n_draws == 20 and post.trace["log_likelihood"].shape == (80, 1)
    np.testing.assert_allclose(post.predictions["test"].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(post.predictions["test"], post.predict_proba(data.x_test), rtol=1e-5)
    assert post.save(tmp_path / "nuts.nc").exists()


def test_nuts_argument_errors():
    model = MLP(3, (2,), 2, key=jax.random.key(0))
    x, y = np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="n_warmup is 0; give an integer >= 1"):
        nuts(model, Gaussian(1.0), x, y, n_warmup=0)
    with pytest.raises(ValueError, match=r"n_samples is 2\.5; give an integer >= 1"):
        nuts(model, Gaussian(1.0), x, y, n_samples=2.5)
    with pytest.raises(ValueError, match="target_acceptance"):
        nuts(model, Gaussian(1.0), x, y, target_acceptance=1.5)


def test_a_chain_that_never_moves_is_named():
    """At temperature 1e-6 every NUTS trajectory diverges: the chain repeats its start, which
    the run says instead of returning copies of it silently."""
    data = load_digits().subset(100, 20, seed=0)
    model = MLP(64, (8,), 10, key=jax.random.key(0))
    with pytest.warns(UserWarning, match=r"nuts chains \[0\] never moved after burn-in"):
        post = nuts(model, Gaussian(0.3), data.x_train, data.y_train, n_warmup=3, n_samples=5,
                    temperature=1e-6, max_depth=4, progress=False)  # fmt: skip
    assert np.all(post.stats["log_density"] == post.stats["log_density"][0])
