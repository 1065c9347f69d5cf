"""Several chains in lockstep, resuming and extending runs, and the run-directory checks."""

import jax
import numpy as np
import pytest

from bnn_shift.data import load_digits
from bnn_shift.inference import hmc
from bnn_shift.inference.chains import BLOCK_SECONDS, next_block_length
from bnn_shift.models import MLP
from bnn_shift.priors import Gaussian


@pytest.fixture(scope="module")
def data():
    return load_digits().subset(200, 50, seed=0)


def fit(data, **kwargs):
    model = MLP(data.n_features, (16,), data.n_classes, key=jax.random.key(0))
    settings = dict(
        step_size=0.02, trajectory_length=0.3, n_iterations=8, n_burnin=2, seed=3, progress=False
    )
    return hmc(model, Gaussian(0.3), data.x_train, data.y_train, **settings | kwargs)


def test_chains_are_independent_runs_of_the_same_kernel(data):
    both = fit(data, n_chains=2, init="prior")
    assert both.stats["acceptance_rate"].shape == (8, 2)
    assert set(np.unique(both.draw_chain)) <= {0, 1}
    assert both.n_draws == 2 * 6  # every post-burn-in state of both chains
    # different starts and momenta: the chains' log-likelihood traces differ
    trace = both.trace["log_likelihood"]
    assert trace.shape == (8, 2) and not np.allclose(trace[:, 0], trace[:, 1])


def test_labelled_eval_sets_are_traced(data):
    post = fit(data, n_chains=2, eval_sets={"test": (data.x_test, data.y_test)})
    assert post.trace["test_accuracy"].shape == (8, 2)
    assert np.all((0 <= post.trace["test_accuracy"]) & (post.trace["test_accuracy"] <= 1))
    assert np.all(post.trace["test_log_predictive"] <= 0)


def test_resume_extends_a_finished_run(data, tmp_path):
    whole = fit(data, n_iterations=8, thin=1)
    fit(data, n_iterations=5, run_dir=tmp_path)
    extended = fit(data, n_iterations=8, run_dir=tmp_path)
    assert extended.attrs["n_iterations"] == 8
    np.testing.assert_array_equal(extended.stats["energy"], whole.stats["energy"])
    for a, b in zip(jax.tree.leaves(extended.draws), jax.tree.leaves(whole.draws)):
        assert isinstance(a, np.memmap)  # streamed draws stay on disk, not in RAM
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(extended.draw_chain, whole.draw_chain)
    np.testing.assert_allclose(
        extended.predict_proba(data.x_test), whole.predict_proba(data.x_test), rtol=1e-6
    )


def test_run_dir_of_another_run_is_refused(data, tmp_path):
    fit(data, n_iterations=3, run_dir=tmp_path)
    with pytest.raises(ValueError, match="checkpoint of a different run"):
        fit(data, n_iterations=3, run_dir=tmp_path, step_size=0.01)


def test_thinning_keeps_every_kth_draw(data):
    post = fit(data, n_iterations=10, thin=3)
    assert post.n_draws == len(range(0, 8, 3))
    assert post.attrs["thin"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("n_chains", [1, 2])
def test_iterations_per_call_does_not_change_the_chain(data, n_chains):
    """Blocks of several iterations per compiled call give bit for bit the one-per-call chain."""
    settings = dict(
        n_iterations=7, n_chains=n_chains, eval_sets={"test": (data.x_test, data.y_test)}
    )
    one = fit(data, iterations_per_call=1, **settings)
    for length in (3, 7):
        other = fit(data, iterations_per_call=length, **settings)
        for name in one.stats:
            np.testing.assert_array_equal(other.stats[name], one.stats[name], err_msg=name)
        for name in one.trace:
            np.testing.assert_array_equal(other.trace[name], one.trace[name], err_msg=name)
        for a, b in zip(jax.tree.leaves(other.draws), jax.tree.leaves(one.draws)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(other.predictions["test"], one.predictions["test"])


def test_bad_chain_settings(data):
    with pytest.raises(ValueError, match="n_chains must be"):
        fit(data, n_chains=0)
    with pytest.raises(ValueError, match="init must be one of"):
        fit(data, init="zeros")
    with pytest.raises(ValueError, match="keep must be one of"):
        fit(data, keep="best")
    with pytest.raises(ValueError, match="iterations_per_call must be a positive integer"):
        fit(data, iterations_per_call=0)


def test_traced_parameters_and_constant_stats_round_trip(data, tmp_path):
    from bnn_shift.inference import Posterior

    post = fit(data, n_chains=2, trace_params=("layers.1.bias",))
    assert post.trace["layers.1.bias"].shape == (8, 2, 10)
    assert post.stats["step_size"].shape == (8, 2) and np.all(post.stats["n_steps"] == 15)
    loaded = Posterior.load(post.save(tmp_path / "p.nc"), MLP(64, (16,), 10, key=jax.random.key(0)))
    np.testing.assert_array_equal(loaded.trace["layers.1.bias"], post.trace["layers.1.bias"])
    tree = post.to_datatree()
    assert tree["posterior"]["layers.1.bias"].dims == ("chain", "draw", "layers.1.bias_dim_0")
    with pytest.raises(ValueError, match="not parameters"):
        fit(data, trace_params=("layers.9.bias",))


@pytest.mark.parametrize(
    ("seconds", "n_run", "cap", "expected"),
    [(0.01, 1, 100, 100), (1.0, 10, 100, 20), (30.0, 1, 100, 1), (0.5, 1, 3, 3)],
)
def test_automatic_blocks_aim_at_a_few_seconds(seconds, n_run, cap, expected):
    assert BLOCK_SECONDS == 2.0
    assert next_block_length(seconds, n_run, cap) == expected
