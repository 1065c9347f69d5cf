"""What the estimators build at fit time: the network, the prior and the seeds."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from sklearn.utils import check_random_state

from bnn_shift.inference.likelihood import n_outputs as count_outputs
from bnn_shift.models.first_layer import FirstLayer
from bnn_shift.models.mlp import MLP
from bnn_shift.priors import PRIORS, Prior, make_prior

EMPCOV_EPS = 1e-8  # EmpCov prior variance along directions the training inputs never vary in

ModelFactory = Callable[[int, int, jax.Array], eqx.Module]  # (n_features, n_outputs, key)
PriorFactory = Callable[[np.ndarray], Prior]  # training inputs (n, d) -> prior


class LearnedNoise(eqx.Module):
    """A regression network with one learned log noise std per target: one example ->
    (2k,) = (the network's k means, log_noise), the layout of gaussian_likelihood(None)."""

    net: eqx.Module
    log_noise: jax.Array  # (k,)

    def __call__(self, x: jax.Array) -> jax.Array:  # (2k,)
        return jnp.concatenate([self.net(x), self.log_noise.astype(jnp.float32)])

    @property
    def first_layer(self) -> FirstLayer:
        """The network's first layer, seen from here."""
        return self.net.first_layer.inside("net")


def build_model(
    model: str | ModelFactory,
    hidden: Sequence[int],
    n_features: int,
    n_outputs: int,
    key: jax.Array,
    learned_noise: bool = False,
) -> eqx.Module:
    """model="mlp" (a ReLU `MLP` with `hidden` widths, () a linear model, any n_outputs >= 1)
    or a callable (n_features, n_outputs, key) -> module, checked to map one example of
    n_features values to n_outputs values; learned_noise wraps it in `LearnedNoise` with log
    noise std 0 (unit noise on standardised targets)."""
    net = _network(model, hidden, n_features, n_outputs, key)
    if learned_noise:
        return LearnedNoise(net, jnp.zeros(n_outputs, jnp.float32))
    return net


def _network(model, hidden, n_features: int, n_outputs: int, key: jax.Array) -> eqx.Module:
    if isinstance(model, str):
        if model != "mlp":
            raise ValueError(
                f'model must be "mlp" or a callable (n_features, n_outputs, key) -> equinox '
                f"module, got {model!r}"
            )
        return MLP(n_features, tuple(int(h) for h in hidden), n_outputs, key=key)
    if not callable(model):
        raise ValueError(f"model must be 'mlp' or a callable, got {type(model).__name__}")
    built = model(n_features, n_outputs, key)
    got = count_outputs(built, np.zeros((1, n_features), np.float32))
    if got != n_outputs:
        raise ValueError(
            f"the model callable built a network with {got} outputs; it was asked for {n_outputs}"
        )
    return built


def build_prior(
    prior: str | Prior | PriorFactory, x: np.ndarray, scale: float, model: eqx.Module
) -> Prior:
    """A name from `bnn_shift.priors.PRIORS` (scaled by `scale`, data priors fitted to x (n, d)
    and put on the model's `first_layer`), a `Prior` used as given, or a callable x -> Prior."""
    if isinstance(prior, Prior):
        return prior
    if isinstance(prior, str):
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"prior_scale must be finite and > 0, got {scale}")
        return make_prior(prior, model, x, float(scale), EMPCOV_EPS)
    if callable(prior):
        built = prior(x)
        if not isinstance(built, Prior):
            raise ValueError(
                f"the prior callable must return a bnn_shift Prior, got {type(built).__name__}"
            )
        return built
    raise ValueError(
        f"prior must be a name ({', '.join(PRIORS)}), a Prior or a callable x -> Prior; "
        f"got {type(prior).__name__}"
    )


def fit_seeds(random_state) -> tuple[int, int]:
    """(model initialisation seed, engine seed) from an int, a RandomState or None."""
    rng = check_random_state(random_state)
    model_seed, engine_seed = rng.randint(0, 2**31 - 1, size=2)
    return int(model_seed), int(engine_seed)
