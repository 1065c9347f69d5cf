"""Prior predictive draws and the EmpCov data-direction report."""

import jax
import numpy as np
import pytest

from bnn_shift.models import MLP, partition_params
from bnn_shift.priors import (
    EmpCov,
    Gaussian,
    Temperature,
    by_path,
    empcov_directions,
    parameter_table,
    prior_predictive,
    std_along_data_directions,
)


def data(n=400, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, 6)) * np.array([4.0, 2.0, 1.0, 0.5, 0.1, 0.0])
    return x.astype(np.float32)


def test_prior_predictive_shapes_and_determinism():
    model = MLP(6, (8,), 3, key=jax.random.key(0))
    x = data(10)
    a = prior_predictive(model, Gaussian(1.0), x, n_samples=5, seed=3)
    b = prior_predictive(model, Gaussian(1.0), x, n_samples=5, seed=3)
    assert a.shape == (5, 10, 3)
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], a[1])  # different networks


def test_prior_predictive_narrow_prior_is_near_uniform():
    model = MLP(6, (8,), 3, key=jax.random.key(0))
    probs = prior_predictive(model, Gaussian(1e-4), data(10), n_samples=3)
    np.testing.assert_allclose(probs, 1 / 3, atol=1e-3)


def test_empcov_directions_finds_the_prior_inside_compositions():
    prior = EmpCov.from_data(data(), scale=0.1, eps=1e-8)
    wrapped = Temperature(by_path({"layers.0.weight": prior, "*": Gaussian(0.1)}), 0.5)
    table = empcov_directions(wrapped, n_top=2, n_bottom=2)
    assert list(table.columns) == ["rank", "data_std", "prior_std"]
    assert list(table["rank"]) == [0, 1, 4, 5]
    assert table.data_std.iloc[0] == pytest.approx(4.0, rel=0.1)
    assert table.prior_std.iloc[-1] == pytest.approx(1e-4, rel=1e-3)  # sqrt(eps), dead feature
    with pytest.raises(ValueError, match="no EmpCov"):
        empcov_directions(Gaussian(0.1))


def test_std_along_data_directions_of_prior_draws_matches_prior_std():
    prior = EmpCov.from_data(data(), scale=0.1, eps=1e-8)
    draws = np.stack(
        [
            np.asarray(prior.sample(jax.random.key(i), np.zeros((50, 6), np.float32)))
            for i in range(40)
        ]
    )  # 2,000 rows in all
    measured = std_along_data_directions(draws, prior)
    _, expected = prior.std_along_data_directions()
    # The std of 2,000 Gaussian draws has relative standard error 1/sqrt(2*2000) = 1.6%; 5 se.
    np.testing.assert_allclose(measured, expected, rtol=0.08)


def test_parameter_table_names_each_parameters_prior():
    params = partition_params(MLP(6, (8,), 3, key=jax.random.key(0)))[0]
    prior = by_path({"layers.0.weight": EmpCov.from_data(data()), "*": Gaussian(0.1)})
    table = parameter_table(prior, params)
    assert list(table.path) == [
        "layers.0.weight",
        "layers.0.bias",
        "layers.1.weight",
        "layers.1.bias",
    ]
    assert table["shape"].iloc[0] == (8, 6)
    assert table.prior.iloc[0].startswith("layers.0.weight -> EmpCov")
    assert table.prior.iloc[1].startswith("* -> Gaussian")
    assert parameter_table(Gaussian(0.1), params).prior.nunique() == 1
