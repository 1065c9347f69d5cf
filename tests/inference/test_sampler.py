"""Tests for the `hmc` driver (bnn_shift.inference.sampler) on a tiny MLP and sklearn digits."""

from __future__ import annotations

import arviz as az
import equinox as eqx
import jax
import numpy as np
import pytest

from bnn_shift import inference
from bnn_shift.data import load_digits
from bnn_shift.data.cache import array_digest
from bnn_shift.inference import Posterior, deep_ensemble, gaussian_likelihood, hmc
from bnn_shift.models import MLP
from bnn_shift.priors import Gaussian, by_path

N_ITER, N_BURNIN = 12, 4


@pytest.fixture(scope="module")
def digits():
    return load_digits().subset(300, 100, seed=0)  # x (n, 8, 8, 1)


@pytest.fixture(scope="module")
def model():
    return MLP(64, (8,), 10, key=jax.random.key(0))


@pytest.fixture(scope="module")
def run(digits, model):
    # h = 0.03 over tau = 0.2 (7 leapfrog steps) is coarse enough that some post-burn-in
    # proposals are rejected, so "a rejection repeats the state" is exercised.
    return hmc(
        model,
        Gaussian(0.3),
        digits.x_train,
        digits.y_train,
        step_size=0.03,
        trajectory_length=0.2,
        n_iterations=N_ITER,
        n_burnin=N_BURNIN,
        eval_sets={"test": digits.x_test},
        seed=0,
        progress=False,
    )


def test_runs_and_records_every_iteration(run):
    assert isinstance(run, Posterior)
    for key in ("accepted", "acceptance_rate", "diverging", "energy", "mh"):
        assert run.stats[key].shape == (N_ITER, 1)  # (iterations, chains)
    assert run.attrs["n_leapfrog_steps"] == 7
    assert run.attrs["method"] == "hmc" and run.attrs["n_burnin"] == N_BURNIN
    assert np.all(np.isfinite(run.stats["energy"]))


def test_burn_in_has_no_mh_test(run):
    assert not np.any(run.stats["mh"][:N_BURNIN])
    assert np.all(run.stats["mh"][N_BURNIN:])
    assert np.all(run.stats["accepted"][:N_BURNIN])  # finite proposals are always kept


def _flat_draws(post: Posterior) -> np.ndarray:  # (n_draws, n_params)
    leaves = jax.tree.leaves(post.draws)
    return np.concatenate([np.reshape(a, (len(a), -1)) for a in leaves], axis=1)


def test_every_post_burn_in_state_is_kept_and_a_rejection_repeats_it(run):
    accepted = run.stats["accepted"][N_BURNIN:, 0]
    assert 0 < accepted.sum() < len(accepted)  # the run has both outcomes
    assert run.n_draws == N_ITER - N_BURNIN
    flat = _flat_draws(run)
    for i in range(1, len(flat)):  # a draw equals its predecessor exactly when rejected
        assert np.array_equal(flat[i], flat[i - 1]) == (not accepted[i])


def test_keep_accepted_reproduces_the_papers_averaging(digits, model):
    paper = _call(digits, model, trajectory_length=0.2, n_iterations=N_ITER, n_burnin=N_BURNIN,
                  keep="accepted")  # fmt: skip
    accepted = paper.stats["accepted"][N_BURNIN:, 0]
    assert paper.n_draws == int(accepted.sum()) and paper.attrs["keep"] == "accepted"
    assert len({row.tobytes() for row in _flat_draws(paper)}) == paper.n_draws


def test_step_sizes_are_jittered_per_trajectory(run):
    steps = run.stats["step_size"][:, 0]
    assert np.all((0.8 * 0.03 <= steps) & (steps <= 1.2 * 0.03))
    assert len(np.unique(steps)) == N_ITER


def test_no_jitter_is_the_papers_fixed_trajectory(digits, model):
    fixed = _call(digits, model, step_size=0.03, trajectory_length=0.2, step_jitter=0.0)
    np.testing.assert_array_equal(fixed.stats["step_size"], np.float32(0.03))


@pytest.mark.parametrize("jitter", [-0.1, 1.0, "0.2"])
def test_bad_step_jitter_raises(digits, model, jitter):
    with pytest.raises(ValueError, match="step_jitter must lie in"):
        _call(digits, model, step_jitter=jitter)


def test_a_trajectory_in_phase_with_the_posterior_still_mixes():
    """Issue 13's reproduction: at h = 0.0215 the fixed trajectory is near a whole period of the
    data-dominated direction and the chains froze at their starts (mean -0.17, sd 0.60). The
    exact posterior is N(0.464, 0.0368^2); with 4 x 400 draws at ESS > 400 the mean's standard
    error is < 0.002 and the sd's < 4% (ESS of the squared deviations for the latter)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 1)).astype(np.float32)
    y = (0.5 * x[:, 0] + 0.5 * rng.normal(size=200)).astype(np.float32)
    precision = 1 + np.sum(x[:, 0].astype(np.float64) ** 2) / 0.25
    mean, sd = np.sum(x[:, 0] * y) / 0.25 / precision, precision**-0.5
    linear = eqx.nn.Linear(1, 1, use_bias=False, key=jax.random.key(0))
    settings = dict(n_iterations=500, n_burnin=100, n_chains=4, init="prior", progress=False)
    post = hmc(linear, Gaussian(1.0), x, y, likelihood=gaussian_likelihood(0.5), step_size=0.0215,
               seed=0, **settings)  # fmt: skip
    draws = np.asarray(post.draws.weight, np.float64).reshape(400, 4)  # (draw, chain)
    ess = float(az.ess(draws, chain_axis=1, draw_axis=0))
    ess_sq = float(az.ess((draws - mean) ** 2, chain_axis=1, draw_axis=0))  # for the variance
    assert min(ess, ess_sq) > 400
    assert abs(draws.mean() - mean) < 5 * sd / np.sqrt(ess)
    assert abs(draws.std() / sd - 1) < 5 * np.sqrt(1 / (2 * ess_sq))
    assert post.attrs["converged"] is True


def test_running_predictions_match_predict_proba(run, digits):
    running = run.predictions["test"]
    assert set(run.predictions) == {"test"}
    assert running.shape == (len(digits.x_test), 10)
    np.testing.assert_allclose(running.sum(1), 1.0, rtol=1e-5)
    # float sums of <= 8 probability vectors vs a scan over the same draws
    np.testing.assert_allclose(running, run.predict_proba(digits.x_test), rtol=1e-5, atol=1e-6)


def test_the_chain_learns(run, digits):
    # a sanity check that the sampler moved toward the posterior: better than chance (10%)
    assert np.mean(run.predict(digits.x_test) == digits.y_test) > 0.3


def _call(digits, model, **overrides):
    kwargs = dict(
        model=model,
        prior=Gaussian(0.3),
        x=digits.x_train,
        y=digits.y_train,
        step_size=0.03,
        n_iterations=2,
        n_burnin=1,
        progress=False,
    )
    kwargs.update(overrides)
    return hmc(**kwargs)


def test_nan_inputs_raise(digits, model):
    x = digits.x_train.copy()
    x[3, 2, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _call(digits, model, x=x)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (lambda y: y[:, None], "labels must be shaped"),
        (lambda y: y[:-1], "labels must be shaped"),
        (lambda y: np.where(y == 0, 10, y), r"\[0, 10\)"),
        (lambda y: np.where(y == 0, -1, y), r"\[0, 10\)"),
        (lambda y: y + 0.5, "integers"),
    ],
    ids=["2d", "short", ">= n_classes", "negative", "fractional"],
)
def test_bad_labels_raise(digits, model, labels, match):
    with pytest.raises(ValueError, match=match):
        _call(digits, model, y=labels(digits.y_train))


def test_prior_rule_matching_no_parameter_raises(digits, model):
    prior = by_path({"layers.5.weight": Gaussian(1.0), "*": Gaussian(0.3)})
    with pytest.raises(ValueError, match="matches no parameter"):
        _call(digits, model, prior=prior)


@pytest.mark.parametrize(
    "bad", [lambda x: x[:, :4], lambda x: x.reshape(len(x), -1)], ids=["cropped", "flattened"]
)
def test_eval_set_with_wrong_feature_shape_raises(digits, model, bad):
    with pytest.raises(ValueError, match="eval set 'shifted'"):
        _call(digits, model, eval_sets={"shifted": bad(digits.x_test)})


def test_eval_set_with_nan_raises(digits, model):
    x = digits.x_test.copy()
    x[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _call(digits, model, eval_sets={"bad": x})


@pytest.mark.parametrize(
    ("n_iterations", "n_burnin"), [(5, 6), (5, 5), (5, -1), (0, 0), (5.0, 1), (5, 1.5), (5, True)]
)
def test_bad_iteration_counts_raise(digits, model, n_iterations, n_burnin):
    with pytest.raises(ValueError, match=r"n_iterations|n_burnin"):
        _call(digits, model, n_iterations=n_iterations, n_burnin=n_burnin)


def test_bad_temperature_and_too_many_steps_raise(digits, model):
    with pytest.raises(ValueError, match="temperature"):
        _call(digits, model, temperature=0.0)
    with pytest.raises(ValueError, match="max_steps"):
        _call(digits, model, step_size=1e-4, max_steps=100)


def test_model_that_cannot_take_the_inputs_raises(digits):
    with pytest.raises(ValueError, match="cannot take examples"):
        _call(digits, MLP(10, (4,), 10, key=jax.random.key(0)))


def test_zero_trajectory_length_raises(digits, model):
    with pytest.raises(ValueError, match="trajectory_length"):
        # max_steps=1: the default trajectory would fail fast with a different message
        _call(digits, model, trajectory_length=0.0, max_steps=1)


def test_pointwise_trace_is_each_points_log_predictive(digits, model):
    post = hmc(
        model, Gaussian(0.3), digits.x_train, digits.y_train,
        step_size=0.03, trajectory_length=0.2, n_iterations=8, n_burnin=2, n_chains=2,
        eval_sets={"test": (digits.x_test, digits.y_test)}, trace_pointwise=("test",),
        seed=0, progress=False,
    )  # fmt: skip
    points = post.trace["test_pointwise_log_predictive"]  # (iterations, chains, m)
    assert points.shape == (8, 2, len(digits.y_test))
    np.testing.assert_allclose(
        points.mean(axis=-1), post.trace["test_log_predictive"], rtol=1e-5, atol=1e-6
    )
    assert set(post.attrs["pointwise_rhat"]["test"]) == {"median", "q90", "max", "share_above"}
    assert post.attrs["eval_set_digests"]["test"] == array_digest(
        np.asarray(digits.x_test, np.float32)
    )


def test_pointwise_trace_needs_a_labelled_eval_set(digits, model):
    with pytest.raises(ValueError, match="not labelled eval sets"):
        _call(digits, model, eval_sets={"test": digits.x_test}, trace_pointwise=("test",))


def test_chains_can_start_at_an_ensembles_members(digits, model):
    members = deep_ensemble(
        model, Gaussian(0.3), digits.x_train, digits.y_train, n_members=3, n_epochs=5,
        learning_rate=1e-2, init_fn=lambda k: MLP(64, (8,), 10, key=k), progress=False,
    )  # fmt: skip
    post = _call(digits, model, n_chains=2, init=members, n_iterations=2, n_burnin=1)
    assert post.attrs["init"] == "posterior (deep_ensemble, 3 draws)"
    assert post.attrs["n_init_gradients"] == 0
    with pytest.raises(ValueError, match="3 draws for 4 chains"):
        _call(digits, model, n_chains=4, init=members)
    other = MLP(64, (4,), 10, key=jax.random.key(0))
    with pytest.raises(ValueError, match="another architecture"):
        _call(digits, other, n_chains=2, init=members)


def test_init_ensemble_fits_one_member_per_chain(digits, model):
    post = _call(digits, model, n_chains=2, init="ensemble", n_iterations=2, n_burnin=1)
    assert post.attrs["init"] == "ensemble" and post.attrs["n_init_gradients"] == 2 * 1000
    with pytest.raises(ValueError, match="init must be one of"):
        _call(digits, model, init="members")


def test_mass_adaptation_warns_about_a_short_burn_in(digits, model):
    with pytest.warns(UserWarning, match="need >= 150 warmup iterations"):
        post = _call(digits, model, adapt_mass=True, n_iterations=4, n_burnin=2)
    assert post.attrs["mass_adaptation"].startswith("Stan windows")
    assert post.stats["mh"].all()  # the adapting burn-in keeps the MH test


def test_step_adaptation_brings_a_diverging_step_down_during_burn_in(digits, model):
    """A starting step at which every trajectory diverges: a burn-in with dual averaging and
    the MH test brings it down, and the kept iterations accept; a burn-in without would not."""
    settings = dict(step_size=0.5, trajectory_length=0.3, n_iterations=40, n_burnin=30)
    with pytest.warns(UserWarning, match="never moved after burn-in"):
        fixed = _call(digits, model, **settings)
    assert fixed.stats["accepted"][30:].mean() == 0
    adapted = _call(digits, model, adapt_step=True, **settings)
    assert adapted.attrs["step_adaptation"].startswith("dual averaging")
    assert adapted.stats["mh"].all()
    assert adapted.attrs["step_size"] < 0.1
    assert adapted.stats["accepted"][30:].mean() > 0.3
    with pytest.raises(ValueError, match="pass n_burnin >= 1"):
        _call(digits, model, adapt_step=True, n_burnin=0)


def test_a_collapsed_auto_step_says_the_posterior_is_too_stiff(digits, model):
    """Inputs x 1e6 make the log density's curvature enormous: the tuned step collapses, and
    the error names stiffness (not "raise the step size")."""
    with pytest.raises(ValueError, match=r"too stiff at chain 0's start.*inputs' scale"):
        _call(digits, model, x=digits.x_train * 1e6, step_size="auto", n_tune=20)


@pytest.fixture
def no_ensemble_fits(monkeypatch):
    """Fail the test if any sampler starts fitting an ensemble."""

    def refuse(*args, **kwargs):
        raise AssertionError("an ensemble was fitted before the settings were checked")

    monkeypatch.setattr("bnn_shift.inference.sampler.deep_ensemble", refuse)


def test_bad_eval_labels_are_refused_before_an_ensemble_start(digits, model, no_ensemble_fits):
    labels = np.full(len(digits.x_test), 10)  # the model has 10 outputs: ids 0..9
    with pytest.raises(ValueError, match=r"eval set 'test' labels must lie in \[0, 10\)"):
        _call(digits, model, init="ensemble", n_chains=2,
              eval_sets={"test": (digits.x_test, labels)})  # fmt: skip


@pytest.mark.parametrize("sampler", ["mala", "mclmc", "adjusted_mclmc", "mile"])
def test_run_lengths_are_refused_before_an_ensemble_start(digits, model, no_ensemble_fits, sampler):
    fit = getattr(inference, sampler)
    start = {} if sampler == "mile" else {"init": "ensemble", "n_chains": 2}
    with pytest.raises(ValueError, match="n_burnin=5 leaves no iteration"):
        fit(model, Gaussian(0.3), digits.x_train, digits.y_train, n_iterations=5, n_burnin=5,
            progress=False, **start)  # fmt: skip


def test_max_leapfrogs_shortens_the_trajectory(digits, model):
    post = _call(digits, model, step_size=1e-3, trajectory_length=1.0, max_leapfrogs=7)
    assert post.attrs["n_leapfrog_steps"] == 7 and post.attrs["max_leapfrogs"] == 7
    assert post.attrs["trajectory_length"] == pytest.approx(7e-3)
    assert np.all(post.stats["n_steps"] == 7)
    adapted = _call(digits, model, step_size=1e-3, max_leapfrogs=7, adapt_step=True,
                    n_iterations=4, n_burnin=2)  # fmt: skip
    assert np.all(adapted.stats["n_steps"] <= 7)  # the cap holds whatever step adapts to
    with pytest.raises(ValueError, match="max_leapfrogs"):
        _call(digits, model, max_leapfrogs=0)
