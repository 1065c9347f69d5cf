"""The minibatch driver: epochs as a pure function of the seeds, blocks, interrupts, errors."""

import re

import jax
import numpy as np
import pytest

from bnn_shift.data import load_digits
from bnn_shift.inference import deep_ensemble, map_fit, sgld
from bnn_shift.inference import minibatch as minibatch_module
from bnn_shift.inference.minibatch import check_batch, divergence_bound
from bnn_shift.models import MLP
from bnn_shift.priors import Gaussian


@pytest.fixture(scope="module")
def problem():
    data = load_digits().subset(120, 10, seed=0)
    return MLP(64, (8,), 10, key=jax.random.key(0)), Gaussian(0.3), data.x_train, data.y_train


def fit_map(problem, **settings):
    return map_fit(
        *problem, n_epochs=6, batch_size=25, learning_rate=0.01, progress=False, **settings
    )


def test_the_run_does_not_depend_on_the_epochs_per_call(problem):
    whole = fit_map(problem)
    for per_call in (1, 4):
        other = fit_map(problem, epochs_per_call=per_call)
        np.testing.assert_array_equal(other.stats["loss"], whole.stats["loss"])
        for a, b in zip(jax.tree.leaves(other.draws), jax.tree.leaves(whole.draws)):
            np.testing.assert_array_equal(a, b)


def test_shuffles_follow_the_seed(problem):
    a, b = fit_map(problem, seed=1), fit_map(problem, seed=2)
    assert not np.array_equal(a.stats["loss"], b.stats["loss"])


def test_sgld_keeps_the_draws_of_its_epochs_across_blocks(problem):
    settings = {"learning_rate": 0.01, "n_epochs": 6, "batch_size": 25, "n_burnin_epochs": 2}
    whole = sgld(*problem, progress=False, **settings)
    split = sgld(*problem, progress=False, epochs_per_call=1, **settings)
    assert whole.n_draws == 4 and whole.attrs["draw_epochs"] == [2, 3, 4, 5]
    for a, b in zip(jax.tree.leaves(whole.draws), jax.tree.leaves(split.draws)):
        np.testing.assert_array_equal(a, b)


def test_ctrl_c_returns_what_was_done(problem, monkeypatch):
    calls = []
    real = minibatch_module._epochs_block

    def interrupted_on_the_third_block(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(minibatch_module, "_epochs_block", interrupted_on_the_third_block)
    with pytest.warns(UserWarning, match="interrupted after 2 of 6 epochs"):
        post = fit_map(problem, epochs_per_call=1)
    assert post.attrs["interrupted"] and post.attrs["n_epochs_done"] == 2
    assert post.stats["loss"].shape == (2,) and post.n_draws == 1


def test_a_non_finite_loss_names_its_epoch(problem):
    """Full batch, SGD at 1e30: the first step sends the weights to ~1e30, so epoch 2's loss
    (log-softmax of ~1e30 logits) is nan; the error names it, whatever the block length."""
    for per_call in (None, 1):
        with pytest.raises(FloatingPointError, match=r"MAP loss became nan at epoch 2; lower"):
            map_fit(
                *problem, n_epochs=4, optimizer="sgd", learning_rate=1e30,
                epochs_per_call=per_call, progress=False,
            )  # fmt: skip


def test_batch_checks():
    assert check_batch(None, 10, 1) == 10
    with pytest.raises(ValueError, match="batch_size must be between 1 and the data size 10"):
        check_batch(11, 10, 1)
    with pytest.raises(ValueError, match="n_epochs is 0; give an integer >= 1"):
        check_batch(5, 10, 0)
    with pytest.raises(ValueError, match=r"n_epochs is 2\.5; give an integer"):
        check_batch(5, 10, 2.5)
    with pytest.raises(ValueError, match="batch_size must be between 1 and the data size 10"):
        check_batch(2.5, 10, 1)


@pytest.mark.parametrize(
    ("engine", "learning_rate"), [("map", 1e6), ("sgld", 1e3), ("deep_ensemble", 1e6)]
)
def test_a_diverging_but_finite_loss_names_the_learning_rate(problem, engine, learning_rate):
    """Learning rates far too large send the loss to 1e13 and beyond, still finite: the driver
    stops at the first epoch past the divergence bound and names the learning rate."""
    model, prior, x, y = problem
    settings = {"learning_rate": learning_rate, "n_epochs": 6, "progress": False}
    fit = {
        "map": lambda: map_fit(*problem, **settings),
        "sgld": lambda: sgld(*problem, batch_size=40, n_burnin_epochs=1, **settings),
        "deep_ensemble": lambda: deep_ensemble(
            model,
            prior,
            x,
            y,
            n_members=2,
            init_fn=lambda k: MLP(64, (8,), 10, key=k),
            **settings,
        ),
    }[engine]
    named = re.escape(f"lower the learning rate (now {learning_rate:.3g})")
    with pytest.raises(FloatingPointError, match=rf"loss diverged at epoch \d.*{named}"):
        fit()


def test_the_divergence_bound_scales_with_the_start_and_the_noise():
    start = np.asarray([2.0, -500.0, 0.01])
    np.testing.assert_allclose(divergence_bound(start), start + 1e3 * np.asarray([2, 500, 1]))
    assert divergence_bound(np.asarray([1.0]), noise_scale=50.0)[0] == 1.0 + 5e4


def test_resuming_with_other_training_data_of_the_same_size_is_refused(problem, tmp_path):
    model, prior, x, y = problem
    map_fit(*problem, n_epochs=2, learning_rate=0.01, progress=False, run_dir=tmp_path)
    with pytest.raises(ValueError, match="fitted to other training data"):
        map_fit(model, prior, x[::-1], y[::-1], n_epochs=2, learning_rate=0.01, progress=False,
                run_dir=tmp_path)  # fmt: skip
