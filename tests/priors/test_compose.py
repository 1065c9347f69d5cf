"""Tests for bnn_shift.priors.by_path: routing parameters to priors by dotted path."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.models import MLP, param_paths, partition_params
from bnn_shift.priors import ByPath, EmpCov, Gaussian, MassFactor, Prior, by_path

D_IN = 4


def empcov(d: int = D_IN) -> EmpCov:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, d))
    x[:, -1] = 1.0  # one dead input
    return EmpCov.from_data(x, scale=0.2, eps=1e-6)


def tiny_params():
    """Leaves (in order): layers.0.weight (5, 4), layers.0.bias (5,), layers.1.weight (3, 5),
    layers.1.bias (3,)."""
    params, _ = partition_params(MLP(D_IN, (5,), 3, key=jax.random.key(0)))
    return params


def leaf(params, path):
    return dict(zip(param_paths(params), jax.tree.leaves(params)))[path]


def test_log_prob_routes_each_leaf_to_its_rule():
    emp, loose, tight = empcov(), Gaussian(1.0), Gaussian(0.1)
    prior = by_path({"layers.0.weight": emp, "*.bias": loose, "*": tight})
    swapped = by_path({"layers.0.weight": emp, "*.bias": tight, "*": loose})

    @jax.jit  # one compilation for all the values (eager dispatch of each op is slow)
    def values(params):
        expected = (
            emp.log_prob(leaf(params, "layers.0.weight"))
            + loose.log_prob([leaf(params, "layers.0.bias"), leaf(params, "layers.1.bias")])
            + tight.log_prob(leaf(params, "layers.1.weight"))
        )
        return prior.log_prob(params), expected, swapped.log_prob(params)

    params = prior.sample(jax.random.key(1), tiny_params())  # typical values for each rule
    got, expected, other = (float(v) for v in values(params))
    assert got == pytest.approx(expected, rel=1e-6)
    # a different routing gives a different value: the test can tell rules apart
    assert abs(other - expected) > 10


def test_children_and_split_name_each_rule_and_its_leaves():
    emp, loose, tight, unused = empcov(), Gaussian(1.0), Gaussian(0.1), Gaussian(2.0)
    prior = by_path({"layers.0.weight": emp, "*.bias": loose, "*": tight})
    assert prior.children() == (emp, loose, tight)
    assert list(prior.walk()) == [prior, emp, loose, tight]
    split = prior.split(tiny_params())
    assert [(part.prior, part.leaves, part.weight) for part in split] == [
        (emp, (0,), 1.0),
        (loose, (1, 3), 1.0),
        (tight, (2,), 1.0),
    ]
    covered = by_path({"*.weight": loose, "*.bias": tight, "*": unused}).split(tiny_params())
    assert [part.prior for part in covered] == [loose, tight]  # an idle default has no part


def test_log_prob_diff_routes_each_leaf():
    params = tiny_params()
    other = jax.tree.map(lambda x: x * 0.5 + 0.01, params)
    prior = by_path({"layers.0.weight": empcov(), "*": Gaussian(0.3)})
    diff = float(prior.log_prob_diff(other, params))
    assert diff == pytest.approx(float(prior.log_prob(other) - prior.log_prob(params)), rel=1e-4)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("layers.?.bias", ["layers.0.bias", "layers.1.bias"]),
        ("layers.[1].*", ["layers.1.weight", "layers.1.bias"]),
        ("*weight", ["layers.0.weight", "layers.1.weight"]),
        ("layers.0.weight", ["layers.0.weight"]),
    ],
)
def test_glob_patterns(pattern, expected):
    params = tiny_params()
    prior = by_path({pattern: Gaussian(1.0), "*": Gaussian(0.1)})
    owners = prior.assign(params)
    paths = param_paths(params)
    assert sorted(paths[i] for i in owners[pattern]) == sorted(expected)
    assert sorted(paths[i] for i in owners["*"]) == sorted(set(paths) - set(expected))


def test_rule_matching_no_parameter_lists_the_paths():
    prior = by_path({"layer.0.weight": Gaussian(1.0), "*": Gaussian(0.1)})  # typo: layer
    with pytest.raises(ValueError, match="matches no parameter") as err:
        prior.log_prob(tiny_params())
    for path in param_paths(tiny_params()):
        assert path in str(err.value)


def test_leaf_matched_by_two_rules_raises():
    prior = by_path({"layers.0.*": Gaussian(1.0), "*.weight": Gaussian(0.5), "*": Gaussian(0.1)})
    with pytest.raises(ValueError, match=r"layers\.0\.weight.*several rules"):
        prior.log_prob(tiny_params())


def test_unmatched_leaf_without_default_raises():
    prior = by_path({"*.weight": Gaussian(1.0)})
    with pytest.raises(ValueError, match=r"layers\.0\.bias.*matched by no rule"):
        prior.log_prob(tiny_params())


def test_non_prior_value_is_a_type_error():
    with pytest.raises(TypeError, match="not a Prior"):
        by_path({"*": 0.1})
    with pytest.raises(ValueError, match="at least one rule"):
        by_path({})


def test_sample_structure_and_per_rule_scales():
    like = {
        "layers": [
            {"weight": jnp.zeros((400, D_IN)), "bias": jnp.zeros(400)},
            {"weight": jnp.zeros((3, 400), jnp.float16), "bias": jnp.zeros(3)},
        ]
    }
    emp = empcov()
    prior = by_path({"layers.0.weight": emp, "layers.0.bias": Gaussian(2.0), "*": Gaussian(0.1)})
    draw = prior.sample(jax.random.key(0), like)
    assert jax.tree.structure(draw) == jax.tree.structure(like)
    for a, b in zip(jax.tree.leaves(draw), jax.tree.leaves(like)):
        assert a.shape == b.shape and a.dtype == b.dtype
    # sample std of n iid normals has relative standard error 1/sqrt(2(n-1)); allow 5 of them
    for x, scale in ((draw["layers"][0]["bias"], 2.0), (draw["layers"][1]["weight"], 0.1)):
        x = np.asarray(x, np.float64).ravel()
        assert np.std(x) == pytest.approx(scale, rel=5 / math.sqrt(2 * (x.size - 1)))
    # the EmpCov leaf puts (almost) nothing on its dead input: prior std there is sqrt(eps)
    w0 = np.asarray(draw["layers"][0]["weight"], np.float64)
    assert np.abs(w0[:, -1]).max() < 5 * math.sqrt(emp.eps)
    assert np.std(w0[:, 0]) > 100 * math.sqrt(emp.eps)


def test_preconditioner_is_aligned_to_leaves():
    params = tiny_params()
    emp = empcov()
    prior = by_path({"layers.0.weight": emp, "*": Gaussian(0.1)})
    factors = prior.preconditioner(params)
    paths = param_paths(params)
    assert len(factors) == len(paths)
    for path, factor in zip(paths, factors):
        if path == "layers.0.weight":
            assert isinstance(factor, MassFactor)
            np.testing.assert_array_equal(
                factor.sqrt_inv_mass, emp.preconditioner([jnp.zeros((1, D_IN))])[0].sqrt_inv_mass
            )
        else:
            assert factor is None


def test_trajectory_scale_is_the_largest_and_describe_lists_rules():
    prior = by_path({"layers.0.*": Gaussian(0.7), "*": Gaussian(0.1)})
    assert isinstance(prior, ByPath) and isinstance(prior, Prior)
    assert prior.trajectory_scale == 0.7
    with pytest.raises(NotImplementedError, match="ByPath has no scale setting"):
        _ = prior.scale
    text = prior.describe()
    assert "layers.0.*" in text and "Gaussian(scale=0.7)" in text and "Gaussian(scale=0.1)" in text
