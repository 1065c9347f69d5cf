"""by_path rules that select by module type or by predicate, on models that are not ours."""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from bnn_shift.models import param_paths, partition_params
from bnn_shift.priors import Gaussian, by_path


class Tiny(eqx.Module):
    """A user's own model: a conv, a norm and a linear head."""

    conv: eqx.nn.Conv2d
    norm: eqx.nn.LayerNorm
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.conv = eqx.nn.Conv2d(1, 2, 3, key=k1)
        self.norm = eqx.nn.LayerNorm(4)
        self.head = eqx.nn.Linear(4, 3, key=k2)


@pytest.fixture
def params():
    return partition_params(Tiny(jax.random.key(0)))[0]


def owned_paths(prior, params):
    paths = param_paths(params)
    return {
        str(rule if isinstance(rule, str) else getattr(rule, "__name__", rule)): [
            paths[i] for i in idx
        ]
        for rule, idx in prior.assign(params).items()
    }


def test_select_by_module_type(params):
    prior = by_path({eqx.nn.Conv2d: Gaussian(1.0), "*": Gaussian(0.1)})
    owned = owned_paths(prior, params)
    assert owned["Conv2d"] == ["conv.weight", "conv.bias"]
    assert owned["*"] == ["norm.weight", "norm.bias", "head.weight", "head.bias"]


def test_select_by_predicate(params):
    def is_vector(path, leaf):
        return leaf.ndim == 1

    prior = by_path({is_vector: Gaussian(1.0), "*": Gaussian(0.1)})
    owned = owned_paths(prior, params)
    assert owned["is_vector"] == ["norm.weight", "norm.bias", "head.bias"]


def test_log_prob_routes_by_type(params):
    prior = by_path({eqx.nn.Linear: Gaussian(2.0), "*": Gaussian(0.5)})
    head = [params.head.weight, params.head.bias]
    rest = [params.conv.weight, params.conv.bias, params.norm.weight, params.norm.bias]
    expected = Gaussian(2.0).log_prob(head) + Gaussian(0.5).log_prob(rest)
    assert jnp.allclose(prior.log_prob(params), expected)


def test_overlap_between_type_and_glob_is_an_error(params):
    prior = by_path({eqx.nn.Linear: Gaussian(1.0), "head.*": Gaussian(2.0), "*": Gaussian(0.1)})
    with pytest.raises(ValueError, match="several rules"):
        prior.log_prob(params)


def test_type_matching_nothing_is_an_error(params):
    prior = by_path({eqx.nn.MultiheadAttention: Gaussian(1.0), "*": Gaussian(0.1)})
    with pytest.raises(ValueError, match=r"inside MultiheadAttention.*matches no parameter"):
        prior.log_prob(params)


def test_bad_rule_key():
    with pytest.raises(TypeError, match="not a path glob, a type or a predicate"):
        by_path({3: Gaussian(1.0)})
