"""`bnn-shift icl | lm | forecast` (flags and config files reach the experiment; its output is
printed) and `compare-priors --model attention` end to end with HMC, tiny. The icl, lm and
forecast runs themselves are tested in tests/experiments."""

from __future__ import annotations

import math
import tomllib

import jax
import numpy as np
import pandas as pd
import pytest

from bnn_shift.attention import LayerNorm
from bnn_shift.cli import main
from bnn_shift.data import load_digits
from bnn_shift.experiments import icl, lm
from bnn_shift.experiments.compare_priors import (
    ComparePriorsConfig,
    attention_classifier,
    initial_model,
    with_gain_prior,
)
from bnn_shift.inference import Posterior
from bnn_shift.models import MLP, param_paths, partition_params
from bnn_shift.priors import make_prior


def test_icl_command_passes_its_flags_and_prints_the_table(tmp_path, capsys, monkeypatch):
    seen = []

    def run_icl(config, out_dir=None, progress=True):
        seen.append((config, out_dir, progress))
        row = {"d_input": 4, "variant": "btt", "d_model": 8, "n_heads": 2}
        table = pd.DataFrame([row | {"train_compute": 1e6, "last_error": 0.25}])
        return icl.ICLResult(config, table, pd.DataFrame())

    monkeypatch.setattr(icl, "run_icl", run_icl)
    out = tmp_path / "icl"
    args = ["icl", "--d-inputs", "4,8", "--widths", "8", "--variants", "btt,standard"]
    assert (
        main([*args, "--steps", "2", "--learning-rate", "0.01", "--quiet", "--out", str(out)]) == 0
    )
    ((config, out_dir, progress),) = seen
    assert config.d_inputs == (4, 8) and config.widths == (8,)
    assert config.variants == ("btt", "standard")
    assert (config.steps, config.learning_rate, config.n_heads) == (2, 0.01, 8)  # 8: default
    assert out_dir == str(out) and progress is False
    printed = capsys.readouterr()
    assert "last_error" in printed.out and "0.25" in printed.out and printed.err == ""
    recorded = tomllib.loads((out / "config.toml").read_text())
    assert recorded["command"] == "icl" and recorded["widths"] == [8]


def test_lm_command_merges_a_config_file_with_flags(tmp_path, capsys, monkeypatch):
    seen = []

    def run_lm(config, out_dir=None, progress=True):
        seen.append(config)
        table = pd.DataFrame([{"variant": "global-window", "val_bpc": 2.5, "train_bpc": 2.4}])
        table[["flops_per_token", "seconds"]] = 1.0
        return lm.LMResult(config, "abc", 5, table, pd.DataFrame())

    monkeypatch.setattr(lm, "run_lm", run_lm)
    settings = tmp_path / "lm.toml"
    settings.write_text('variants = ["global-window"]\nd_model = 8\nn_heads = 1\ndepth = 3\n')
    args = ["lm", "--config", str(settings), "--path", "abc.txt", "--depth", "1"]
    assert main([*args, "--quiet", "--out", str(tmp_path / "lm")]) == 0
    (config,) = seen
    assert config.variants == ("global-window",) and (config.d_model, config.n_heads) == (8, 1)
    assert config.depth == 1 and config.path == "abc.txt"  # the flag beats the file
    printed = capsys.readouterr().out
    assert "corpus: abc (vocabulary 5)" in printed and "global-window" in printed


def test_forecast_command_reports_a_clear_error_for_a_missing_file(tmp_path, capsys):
    code = main(["forecast", "--path", str(tmp_path / "nope.csv"), "--out", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert "nope.csv is not a file" in err and "Traceback" not in err


@pytest.mark.slow
def test_compare_priors_runs_hmc_on_the_attention_model(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["compare-priors", "--dataset", "digits", "--model", "attention", "--patch-size", "4"]
    args += ["--attention-width", "8", "--attention-heads", "2", "--n-train", "40"]
    args += ["--n-test", "20", "--priors", "gaussian", "--no-map", "--n-iterations", "2"]
    args += ["--n-burnin", "1", "--step-size", "1e-3", "--noise", "0,2", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    assert "accuracy vs noise std" in capsys.readouterr().out
    table = pd.read_csv(out / "metrics.csv")
    assert set(table.method) == {"hmc-gaussian"} and set(table.severity) == {0.0, 2.0}
    config = ComparePriorsConfig(
        model="attention", patch_size=4, attention_width=8, attention_heads=2
    )
    model_like = attention_classifier(config, 1, 10, 8, jax.random.key(0))
    posterior = Posterior.load(out / "posterior-hmc-gaussian.nc", model_like)
    # the LayerNorm rule (prior std 1) does not stretch the trajectory, (pi/2) * 0.1
    assert posterior.attrs["trajectory_length"] == pytest.approx(math.pi / 2 * 0.1)
    assert posterior.attrs["n_leapfrog_steps"] == 158
    assert "<inside LayerNorm>" in posterior.attrs["prior"]
    assert np.all(np.isfinite(posterior.trace["log_likelihood"]))
    assert posterior.predict_proba(load_digits().x_test[:3]).shape == (3, 10)


def test_attention_priors_take_empcov_first_and_put_the_gains_at_one_std():
    data = load_digits().subset(30, 10, seed=0)
    config = ComparePriorsConfig(
        model="attention", patch_size=4, attention_width=8, attention_heads=2, structure="mlr"
    )
    model = initial_model(config, data)
    first = model.first_layer
    assert (first.path, first.kind, first.kernel_size, first.stride) == (
        "patch_embed.weight",
        "conv",
        4,
        4,
    )
    params = partition_params(model)[0]
    empcov = make_prior("empcov", model, data.x_train, 0.1, 1e-8)
    prior = with_gain_prior(empcov)
    leaves, paths = jax.tree.leaves(params), param_paths(params)
    gains = [paths[i] for i in prior.assign(params)[LayerNorm]]
    assert gains == [p for p, leaf in zip(paths, leaves) if np.all(np.asarray(leaf) == 1.0)]
    assert len(gains) == 5  # norm1, q_norm, k_norm, norm2, the final norm
    # each gain (= 1 at init) moves from N(0, 0.1^2) to N(0, 1): log density + 49.5 - log 10
    n_gains = sum(leaves[paths.index(p)].size for p in gains)
    change = float(prior.log_prob(params) - empcov.log_prob(params))
    assert change == pytest.approx(n_gains * (49.5 - np.log(10.0)), abs=0.05)


@pytest.mark.slow
def test_ctrl_c_during_a_fit_stops_compare_priors_after_saving_its_draws(
    tmp_path, capsys, monkeypatch
):
    """Ctrl-C is simulated in the driver's progress update after two iterations: the HMC fit
    returns what it drew, and the command stops there instead of fitting the next prior."""
    from bnn_shift.inference import chains

    shown = chains._show

    def press_ctrl_c_after_two_blocks(bar, stats_rows, *args):
        shown(bar, stats_rows, *args)
        if len(stats_rows) >= 2:  # automatic blocks: 1 burn-in iteration, then a kept one
            raise KeyboardInterrupt

    monkeypatch.setattr(chains, "_show", press_ctrl_c_after_two_blocks)
    out = tmp_path / "run"
    args = ["compare-priors", "--dataset", "digits", "--hidden", "8", "--n-train", "60"]
    args += ["--n-test", "20", "--priors", "gaussian,empcov", "--no-map", "--n-iterations", "4"]
    args += ["--n-burnin", "1", "--step-size", "1e-3", "--quiet", "--out", str(out)]
    assert main(args) == 130
    assert "interrupted while fitting hmc-gaussian" in capsys.readouterr().err
    model_like = MLP(64, (8,), 10, key=jax.random.key(0))
    posterior = Posterior.load(out / "posterior-hmc-gaussian.nc", model_like)
    assert posterior.attrs["interrupted"] and posterior.n_draws > 0
    assert not (out / "posterior-hmc-empcov.nc").exists()
    assert not (out / "metrics.csv").exists()
