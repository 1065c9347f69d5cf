"""Several chains in lockstep, resuming and extending runs, and the run-directory checks."""

import jax
import numpy as np
import pytest

from bnn_shift.data import load_digits
from bnn_shift.inference import hmc
from bnn_shift.inference.chains import BLOCK_SECONDS, DRAWS_DIR, next_block_length
from bnn_shift.inference.checkpoint import STATE_FILE, CheckpointError, load_arrays
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
    with pytest.raises(ValueError, match="iterations_per_call is 0; give an integer >= 1"):
        fit(data, iterations_per_call=0)
    with pytest.raises(ValueError, match=r"thin is 2\.0; give an integer >= 1"):
        fit(data, thin=2.0)


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


def test_keeping_accepted_states_when_none_is_accepted_warns_and_names_the_cause(data):
    """A step far above the stability limit: every proposal diverges; keep="accepted" keeps
    nothing, and the run (and every later prediction) says why."""
    with pytest.warns(UserWarning, match=r"kept no draws: keep=\"accepted\".*diverged"):
        post = fit(data, step_size=50.0, keep="accepted", n_iterations=4, n_burnin=1)
    assert post.n_draws == 0 and "diverged" in post.attrs["no_draws"]
    with pytest.raises(ValueError, match='no draws: keep="accepted"'):
        post.predict_proba(data.x_test)


def test_a_run_interrupted_in_burn_in_names_the_burn_in(data, monkeypatch):
    from bnn_shift.inference import chains

    real, calls = chains.build_block, []

    def interrupting_build(*args, **kwargs):
        block = real(*args, **kwargs)

        def run(*a):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return block(*a)

        return run

    monkeypatch.setattr(chains, "build_block", interrupting_build)
    with pytest.warns(
        UserWarning, match="kept no draws: the run was interrupted after 1 iterations, all burn-in"
    ):
        post = fit(data, n_iterations=6, n_burnin=3, iterations_per_call=1)
    assert post.attrs["interrupted"] and "n_burnin=3" in post.attrs["no_draws"]


def test_unlabelled_or_badly_labelled_eval_sets(data):
    for labels, match in [
        (np.full(len(data.y_test), -1), r"eval set 'test' labels must lie in \[0, 10\)"),
        (np.full(len(data.y_test), 99), r"eval set 'test' labels must lie in \[0, 10\)"),
        (np.full(len(data.y_test), 1.5), "eval set 'test' labels must be integers"),
        (data.y_test.astype(str), "eval set 'test' labels must be integer class ids"),
    ]:
        with pytest.raises(ValueError, match=match):
            fit(data, n_iterations=3, eval_sets={"test": (data.x_test, labels)})


def test_resuming_with_fewer_iterations_is_refused(data, tmp_path):
    fit(data, n_iterations=5, run_dir=tmp_path)
    with pytest.raises(ValueError, match="holds a run of 5 iterations, more than n_iterations=3"):
        fit(data, n_iterations=3, run_dir=tmp_path)


def test_resuming_with_other_training_data_of_the_same_size_is_refused(data, tmp_path):
    fit(data, n_iterations=3, run_dir=tmp_path)
    with pytest.raises(ValueError, match="fitted to other training data"):
        model = MLP(data.n_features, (16,), data.n_classes, key=jax.random.key(0))
        hmc(model, Gaussian(0.3), data.x_train[::-1], data.y_train[::-1], step_size=0.02,
            trajectory_length=0.3, n_iterations=3, n_burnin=2, seed=3, progress=False,
            run_dir=tmp_path)  # fmt: skip


def test_a_fresh_start_does_not_merge_an_earlier_runs_draws(data, tmp_path):
    first = fit(data, n_iterations=6, run_dir=tmp_path)
    (tmp_path / STATE_FILE).unlink()
    with pytest.warns(UserWarning, match="no checkpoint but 4 kept-draw files of an earlier run"):
        again = fit(data, n_iterations=4, run_dir=tmp_path)
    assert first.n_draws == 4 and again.n_draws == 2


def test_a_deleted_draw_file_is_noticed(data, tmp_path):
    fit(data, n_iterations=5, run_dir=tmp_path)
    files = sorted((tmp_path / DRAWS_DIR).glob("*.npz"))
    files[1].unlink()
    with pytest.warns(UserWarning, match=f"lacks 1 of the run's 4 kept draws \\({files[1].name}"):
        post = fit(data, n_iterations=6, run_dir=tmp_path)
    assert post.n_draws == 3  # 4 kept, one gone


def test_damaged_run_files_are_named_with_the_way_out(data, tmp_path):
    fit(data, n_iterations=4, run_dir=tmp_path)
    draw = sorted((tmp_path / DRAWS_DIR).glob("*.npz"))[0]
    draw.write_bytes(draw.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=rf"kept draw .*{draw.name} cannot be read.*delete"):
        fit(data, n_iterations=5, run_dir=tmp_path)
    for damage in (b"", b"not a zip file", np.arange(3).tobytes()):
        (tmp_path / STATE_FILE).write_bytes(damage)
        with pytest.raises(CheckpointError, match=rf"{STATE_FILE} is damaged.*delete it") as err:
            fit(data, n_iterations=5, run_dir=tmp_path)
        assert "allow_pickle" not in str(err.value)


def test_a_pickled_checkpoint_is_refused_without_numpys_advice(tmp_path):
    path = tmp_path / STATE_FILE
    np.savez(path, __meta__=np.asarray([{"completed": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="Python objects, which are never loaded") as err:
        load_arrays(path)
    assert "allow_pickle" not in str(err.value)
