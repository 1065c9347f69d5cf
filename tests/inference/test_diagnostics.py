"""Diagnostics of saved posteriors: sampler health and function-space R-hat/ESS."""

import warnings

import jax
import numpy as np
import pytest

from bnn_shift.inference import Posterior
from bnn_shift.inference.convergence import check_convergence
from bnn_shift.inference.diagnostics import (
    function_space_summary,
    open_run,
    report,
    sampler_health,
)
from bnn_shift.inference.posterior import empty_draws
from bnn_shift.models import MLP, partition_params


def saved(tmp_path, trace, n_burnin=2, check=False, **stats):
    """A saved posterior with this trace (and stats); check: with its convergence attrs."""
    params, static = partition_params(MLP(3, (2,), 2, key=jax.random.key(0)))
    n_iter, n_chains = next(iter(trace.values())).shape
    default_stats = {
        "accepted": np.ones((n_iter, n_chains), bool),
        "acceptance_rate": np.full((n_iter, n_chains), 0.8, np.float32),
        "diverging": np.zeros((n_iter, n_chains), bool),
    }
    post = Posterior(
        static=static,
        draws=empty_draws(params),
        stats=default_stats | stats,
        trace=trace,
        attrs={"method": "hmc", "n_burnin": n_burnin, "step_size": 0.01, "n_leapfrog_steps": 7},
    )
    if check:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_convergence(post)
    return open_run(post.save(tmp_path / "post.nc"))


def test_rhat_flags_chains_that_disagree(tmp_path):
    rng = np.random.default_rng(0)
    mixed = rng.normal(size=(402, 4))
    stuck = mixed + np.array([0.0, 0.0, 3.0, 3.0])  # two chains sit 3 sd away
    tree = saved(tmp_path, {"mixed": mixed, "stuck": stuck})
    table = function_space_summary(tree)
    assert table.loc["mixed", "r_hat"] < 1.01
    assert table.loc["stuck", "r_hat"] > 1.5
    # 4 x 400 independent draws: bulk ESS close to 1600 (within sampling noise of the estimator)
    assert 1200 < table.loc["mixed", "ess_bulk"] < 2100


def test_sampler_health_counts_divergences_across_burn_in(tmp_path):
    diverging = np.zeros((10, 2), bool)
    diverging[0, 1] = diverging[7, 0] = True
    tree = saved(tmp_path, {"ll": np.zeros((10, 2))}, diverging=diverging)
    health = sampler_health(tree)
    assert health["chains"] == 2 and health["burn-in"] == 2 and health["draws"] == 8
    assert health["divergences"] == 2
    assert health["acceptance rate"] == pytest.approx(0.8)


def test_report_explains_when_there_are_too_few_draws(tmp_path):
    tree_path = tmp_path / "post.nc"
    saved(tmp_path, {"ll": np.zeros((4, 1))})
    text = report(tree_path)
    assert "too few post-burn-in iterations" in text and "divergences" in text


def test_health_says_whether_the_run_converged(tmp_path):
    assert sampler_health(saved(tmp_path, {"ll": np.zeros((10, 1))}))["converged"].startswith(
        "unchecked"
    )
    mixed = np.random.default_rng(0).normal(size=(40, 2))
    for trace, verdict in ((mixed, "yes"), (mixed + np.array([0.0, 5.0]), "NO")):
        post = saved(tmp_path, {"log_likelihood": trace}, check=True)
        assert sampler_health(post)["converged"].startswith(verdict)


def test_per_point_traces_are_summarised_not_tabled(tmp_path):
    rng = np.random.default_rng(3)
    trace = {
        "log_likelihood": rng.normal(size=(40, 2)),
        "test_pointwise_log_predictive": rng.normal(size=(40, 2, 30)),
    }
    tree = saved(tmp_path, trace, check=True)
    assert list(function_space_summary(tree).index) == ["log_likelihood"]
    assert "per-point R-hat on test: median" in report(tmp_path / "post.nc")
