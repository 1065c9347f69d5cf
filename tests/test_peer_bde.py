"""benchmarks/peer_bde.py's bookkeeping, without bde installed: gradient counts of both sides,
the matched-budget settings, the resume of finished rows and the missing-environment error."""

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.append(str(Path(__file__).parents[1] / "benchmarks"))  # after the package

import peer_bde
import peer_bde_worker as worker


def problem(n_features=784, hidden=(256, 256), prior_scale=0.1) -> peer_bde.Problem:
    x = np.zeros((20, n_features), np.float32)
    y = np.arange(20, dtype=np.int32) % 10
    return peer_bde.Problem("mnist", x, y, {}, hidden, prior_scale, None)


def test_bde_defaults_gradients():
    # 2 members x 20 full-batch epochs, warmup 50 = 40 + 5 + 5 steps, 10 samples; 2 per step
    count = worker.bde_gradients(
        n_members=2, epochs_run=20, fraction=1.0, warmup_steps=50, n_samples=10
    )
    assert count == {
        "gradients": 280.0,
        "gradients_init": 40.0,
        "gradients_tuning": 200.0,
        "gradients_sampling": 40.0,
    }


def test_warmup_phases_truncate_and_early_stopping_trains_on_part():
    assert worker.warmup_steps_run(400) == 400
    assert worker.warmup_steps_run(7) == 5 + 0 + 0  # int(5.6), int(0.7), int(0.7)
    assert worker.train_fraction(1000, None, 0.15) == 1.0
    assert worker.train_fraction(1000, 10, 0.15) == 0.85
    assert worker.train_fraction(101, 10, 0.15) == (101 - 16) / 101  # ceil, as sklearn


def test_epochs_run_is_the_longest_member_history():
    history = {"Model0": {"epoch": np.arange(12)}, "Model1": {"epoch": np.arange(30)}}
    assert worker.epochs_run(history) == 30


def test_hmc_gradients_of_a_fitted_estimator():
    from bnn_shift.sklearn import BNNClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    est = BNNClassifier(
        hidden=(), n_iterations=4, n_burnin=1, epochs=5, max_leapfrogs=8, random_state=0
    ).fit(x, y)
    count = peer_bde.ours_gradients(est)
    assert count["gradients_init"] == 5  # the MAP start
    assert count["gradients_sampling"] == np.sum(est.posterior_.stats["n_steps"]) <= 4 * 8
    assert count["gradients_tuning"] >= 500  # 50 dual-averaging trajectories of 10
    assert count["gradients"] == sum(v for k, v in count.items() if k != "gradients")


@pytest.mark.parametrize("target", [1_000, 12_153, 40_000])
def test_matched_settings_spend_the_target(target):
    digits = problem(64, (32,), 1.0)
    s = peer_bde.matched_settings(target, digits)
    count = worker.bde_gradients(
        n_members=s["n_members"], epochs_run=s["epochs"], fraction=1.0,
        warmup_steps=s["warmup_steps"], n_samples=s["n_samples"],
    )  # fmt: skip
    assert count["gradients"] == pytest.approx(target, rel=0.02)
    assert math.ceil(s["n_samples"] / s["n_thinning"]) <= peer_bde.MATCHED_DRAWS
    assert s["prior_kwargs"] == {"scale": 1.0} and s["hidden_layers"] == [32]


def test_matched_settings_cap_the_stored_positions():
    mnist = problem()
    assert mnist.n_params == 785 * 256 + 257 * 256 + 257 * 10
    s = peer_bde.matched_settings(40_000, mnist)
    stored = s["n_members"] * s["n_samples"] * mnist.n_params * 4
    assert stored <= peer_bde.MATCHED_STORED_BYTES
    count = worker.bde_gradients(
        n_members=s["n_members"], epochs_run=s["epochs"], fraction=1.0,
        warmup_steps=s["warmup_steps"], n_samples=s["n_samples"],
    )  # fmt: skip
    assert count["gradients"] == pytest.approx(40_000, rel=0.02)  # the rest goes to warmup


def test_matched_needs_our_row():
    with pytest.raises(SystemExit, match="ours-hmc"):
        peer_bde.bde_settings("bde-matched", problem(), [], smoke=False)
    rows = [{"dataset": "mnist", "fit": "ours-hmc", "gradients": 8000.0}]
    assert peer_bde.bde_settings("bde-matched", problem(), rows, smoke=False)["n_members"] == 4


def test_resume_keeps_rows_and_refuses_other_settings(tmp_path):
    settings = {"smoke": True, "seed": 0}
    assert peer_bde.finished_rows(tmp_path, settings) == []
    rows = [{"dataset": "digits", "fit": "ours-hmc", "gradients": 12.0, "settings": "{}"}]
    peer_bde.write_rows(rows, tmp_path)
    again = peer_bde.finished_rows(tmp_path, settings)
    assert [(r["dataset"], r["fit"], r["gradients"]) for r in again] == [
        ("digits", "ours-hmc", 12.0)
    ]
    assert pd.read_csv(tmp_path / peer_bde.TABLE).shape == (1, 4)
    with pytest.raises(SystemExit, match="other settings"):
        peer_bde.finished_rows(tmp_path, settings | {"smoke": False})
    assert json.loads((tmp_path / "settings.json").read_text()) == settings


def test_missing_bde_environment_says_how_to_create_it(tmp_path):
    with pytest.raises(SystemExit, match=re.escape("python3.12 -m venv /work/bde-venv")):
        peer_bde.check_bde(tmp_path / "no-venv" / "bin" / "python")
