"""Convergence is reported, not assumed: function-space R-hat/ESS, warnings, stuck chains."""

import warnings

import arviz as az
import numpy as np
import pytest

from bnn_shift.inference import Posterior
from bnn_shift.inference.chains import POINTWISE
from bnn_shift.inference.convergence import (
    check_convergence,
    function_space_rhat,
    pointwise_rhat,
    stuck_chains,
)


def chain_posterior(trace: np.ndarray, accepted: np.ndarray | None = None, n_burnin: int = 2):
    """A sampler-shaped Posterior with a log-likelihood trace (n_iterations, n_chains)."""
    accepted = np.ones(trace.shape, bool) if accepted is None else accepted
    return Posterior(
        static=None,
        draws={"w": np.zeros((1, 1))},
        stats={"accepted": accepted},
        trace={"log_likelihood": trace, "test_log_predictive": trace, "test_accuracy": trace},
        attrs={"method": "hmc", "n_burnin": n_burnin, "step_size": 0.1},
    )


def test_agreeing_chains_converge_silently():
    mixed = np.random.default_rng(0).normal(size=(200, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for chains that agree
        post = check_convergence(chain_posterior(mixed))
    assert post.attrs["converged"] is True
    summary = post.attrs["convergence"]
    assert set(summary) == {"log_likelihood", "test_log_predictive"}  # accuracy is not traced
    assert summary["log_likelihood"]["r_hat"] < 1.02
    # 4 x 198 independent draws: bulk ESS near 792 (the estimator's own noise is ~10%)
    assert 600 < summary["log_likelihood"]["ess_bulk"] < 1000


def test_disagreeing_chains_warn_and_are_labelled():
    mixed = np.random.default_rng(0).normal(size=(200, 2))
    with pytest.warns(UserWarning, match="have not converged: function-space R-hat"):
        post = check_convergence(chain_posterior(mixed + np.array([0.0, 3.0])))
    assert post.attrs["converged"] is False


def test_one_chain_is_unchecked():
    post = check_convergence(chain_posterior(np.zeros((50, 1))))
    assert post.attrs["converged"] is None
    assert post.attrs["convergence"].startswith("unchecked")
    assert function_space_rhat({"log_likelihood": np.zeros((3, 2))}, n_burnin=0) == {}


def test_a_chain_that_never_moves_after_burn_in_is_named():
    accepted = np.ones((200, 3), bool)
    accepted[2:, 1] = False  # chain 1 rejects everything after its burn-in
    trace = np.random.default_rng(0).normal(size=(200, 3))
    post = chain_posterior(trace, accepted)
    assert stuck_chains(post) == [1]
    with pytest.warns(UserWarning, match=r"hmc chains \[1\] never moved after burn-in"):
        check_convergence(post)


def test_pointwise_rhat_is_arviz_rank_rhat_per_point():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(100, 3, 4))
    values[:, 2, 1] += 2.0  # point 1: one chain sits elsewhere
    r = pointwise_rhat(values)
    for i in range(4):
        assert r[i] == pytest.approx(float(az.rhat(values[:, :, i], chain_axis=1, draw_axis=0)))
    # split halves: means (0, 0, 0, 0, 2, 2), between-half variance 16/15 over a within variance
    # of 1, so R-hat ~ sqrt(1 + 16/15) = 1.44; the other points' chains agree
    assert r[1] == pytest.approx(np.sqrt(1 + 16 / 15), abs=0.1)
    assert np.all(np.delete(r, 1) < 1.05)
    with pytest.raises(ValueError, match="n_chains >= 2"):
        pointwise_rhat(values[:, :1])


def test_pointwise_summary_lands_in_attrs_and_not_in_the_scalar_rhat():
    rng = np.random.default_rng(2)
    post = chain_posterior(rng.normal(size=(200, 2)))
    points = rng.normal(size=(200, 2, 50))
    points[:, 1, :5] += 3.0  # 5 of 50 points disagree between chains
    post.trace["test" + POINTWISE] = points
    check_convergence(post)
    assert "test" + POINTWISE not in post.attrs["convergence"]
    summary = post.attrs["pointwise_rhat"]["test"]
    assert summary["share_above"] == pytest.approx(0.1)
    assert summary["median"] < 1.05 < summary["max"]


def test_points_predicted_with_certainty_do_not_poison_the_summary():
    rng = np.random.default_rng(4)
    post = chain_posterior(rng.normal(size=(100, 2)))
    points = rng.normal(size=(100, 2, 10))
    points[:, :, :3] = 0.0  # log p = 0 in every draw: no variance, R-hat undefined
    post.trace["test" + POINTWISE] = points
    check_convergence(post)
    summary = post.attrs["pointwise_rhat"]["test"]
    assert np.isfinite(summary["median"]) and summary["max"] < 1.1
