"""A compare-priors run directory records its progress: each method saved as soon as it is
fitted, interrupted or killed runs marked, and `evaluate` scoring only what the run finished."""

from __future__ import annotations

import dataclasses
import importlib
import json

import jax
import numpy as np
import pytest

from bnn_shift.cli import main
from bnn_shift.experiments.evaluate_runs import evaluate_runs, load_run

from .saved_run import CONFIG, perturbed_posterior, write_run

# the module (bnn_shift.experiments re-exports its function under the same name)
cp = importlib.import_module("bnn_shift.experiments.compare_priors")
METHODS = ("map", "hmc-gaussian", "hmc-empcov")
SETTINGS = dataclasses.replace(CONFIG, priors=("gaussian", "empcov"), noise_stds=(0.0, 1.0))


def fake_fits(monkeypatch, interrupt_at: str | None = None, fail_at: str | None = None):
    """fit_method returning perturbed copies of the initial network at once; Ctrl-C cuts the
    fit of `interrupt_at` short (it returns what it drew, marked interrupted), and `fail_at`
    raises as a diverging fit does."""
    fitted = []

    def fit(method, config, data, progress, done=None, chains_dir=None):
        fitted.append(method)
        if method == fail_at:
            raise FloatingPointError("MAP loss diverged at epoch 2; lower the learning rate")
        post = perturbed_posterior(cp.initial_model(config, data), 2, len(fitted))
        post.attrs["interrupted"] = method == interrupt_at
        return post

    monkeypatch.setattr(cp, "fit_method", fit)
    return fitted


def state(out) -> dict:
    return json.loads((out / "config.json").read_text())["run"]


def test_each_method_is_saved_as_it_is_fitted_and_the_run_marked_complete(tmp_path, monkeypatch):
    saved_before = []
    real_save = cp.RunRecord.save

    def save(self, out, method, posterior):
        saved_before.append((method, sorted(p.name for p in out.glob("posterior-*.nc"))))
        return real_save(self, out, method, posterior)

    monkeypatch.setattr(cp.RunRecord, "save", save)
    fake_fits(monkeypatch)
    cp.compare_priors(SETTINGS, tmp_path, progress=False)
    assert saved_before[1] == ("hmc-gaussian", ["posterior-map.nc"])  # map on disk already
    assert state(tmp_path) == {"status": "complete", "methods_done": list(METHODS)}


def test_ctrl_c_stops_the_comparison_saves_what_was_done_and_marks_it(tmp_path, monkeypatch):
    fitted = fake_fits(monkeypatch, interrupt_at="hmc-gaussian")
    with pytest.raises(KeyboardInterrupt, match=r"interrupted while fitting hmc-gaussian.*partial"):
        cp.compare_priors(SETTINGS, tmp_path, progress=False)
    assert fitted == ["map", "hmc-gaussian"]  # the next method is not run
    run = state(tmp_path)
    assert run["status"] == "interrupted" and run["methods_done"] == ["map"]
    assert run["methods_partial"] == ["hmc-gaussian"]
    assert not (tmp_path / "metrics.csv").exists()
    with pytest.warns(UserWarning, match="incomplete run, interrupted.*hmc-gaussian stopped early"):
        result = evaluate_runs([tmp_path], severities=(1.0,), progress=False)
    assert set(result.table["method"]) == {"map", "hmc-gaussian"}
    assert result.settings["incomplete_runs"] == {str(tmp_path): "interrupted"}


def test_the_command_exits_130_on_ctrl_c(tmp_path, monkeypatch, capsys):
    fake_fits(monkeypatch, interrupt_at="map")
    args = ["compare-priors", "--dataset", "digits", "--n-train", "100", "--n-test", "60"]
    args += ["--hidden", "8", "--priors", "gaussian", "--seed", "3", "--quiet"]
    assert main([*args, "--out", str(tmp_path)]) == 130
    assert "interrupted while fitting map" in capsys.readouterr().err
    assert state(tmp_path)["status"] == "interrupted"


def test_a_killed_run_is_scored_only_for_what_it_saved(tmp_path, monkeypatch):
    """SIGKILL after the first posterior: config.json still says running."""
    fake_fits(monkeypatch, fail_at="hmc-gaussian")
    with pytest.raises(FloatingPointError):
        cp.compare_priors(SETTINGS, tmp_path, progress=False)
    assert state(tmp_path)["status"] == "failed" and "diverged" in state(tmp_path)["note"]
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["run"] = {"status": "running", "methods_done": ["map"]}  # as a SIGKILL leaves it
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.warns(UserWarning, match=r"incomplete run, running: evaluating the 1 methods"):
        saved = load_run(tmp_path, cp.load_data(SETTINGS))
    assert list(saved.posteriors) == ["map"] and saved.status == "running"


def test_posteriors_of_an_earlier_run_with_other_methods_are_ignored(tmp_path, monkeypatch):
    write_run(tmp_path)  # map and hmc-gaussian
    fake_fits(monkeypatch)
    fewer = dataclasses.replace(SETTINGS, priors=("empcov",))
    with pytest.warns(UserWarning, match="posteriors of an earlier run .posterior-hmc-gaussian"):
        cp.compare_priors(fewer, tmp_path, progress=False)
    assert (tmp_path / "posterior-hmc-gaussian.nc").exists()  # left alone
    with pytest.warns(UserWarning, match="ignoring posterior-hmc-gaussian.nc, not written by"):
        result = evaluate_runs([tmp_path], severities=(1.0,), progress=False)
    assert set(result.table["method"]) == {"map", "hmc-empcov"}


def test_a_saved_method_whose_file_is_gone_is_named(tmp_path):
    write_run(tmp_path)
    (tmp_path / "posterior-map.nc").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks posterior-map\.nc, which its run saved"):
        evaluate_runs([tmp_path], progress=False)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", r"config\.json is not valid JSON"),
        ("[1, 2]", r"config\.json holds list"),
        ('{"n_iterations": 2.5}', r"config\.json: n_iterations is 2\.5; give an integer"),
        ('{"run": {"status": "odd"}}', r"config\.json: its 'run' entry is damaged"),
    ],
)
def test_a_damaged_config_json_is_named(tmp_path, content, match):
    write_run(tmp_path)
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ValueError, match=match):
        evaluate_runs([tmp_path], progress=False)


def test_a_damaged_posterior_is_named_by_evaluate_and_diagnose(tmp_path, capsys):
    write_run(tmp_path)
    path = tmp_path / "posterior-map.nc"
    path.write_bytes(path.read_bytes()[:300])
    for command in (["evaluate", str(tmp_path), "--quiet"], ["diagnose", str(tmp_path)]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert f"{path} cannot be read as a saved posterior" in err and "Traceback" not in err


def test_rerunning_an_interrupted_comparison_fits_only_what_it_had_not_saved(tmp_path, monkeypatch):
    fake_fits(monkeypatch, interrupt_at="hmc-empcov")
    with pytest.raises(KeyboardInterrupt):
        cp.compare_priors(SETTINGS, tmp_path, progress=False)
    data = cp.load_data(SETTINGS)
    with pytest.warns(UserWarning, match="incomplete run, interrupted"):
        before = load_run(tmp_path, data).posteriors
    fitted = fake_fits(monkeypatch)
    result = cp.compare_priors(SETTINGS, tmp_path, progress=False)
    assert fitted == ["hmc-empcov"]  # the partial fit is redone, the finished ones are loaded
    assert state(tmp_path) == {"status": "complete", "methods_done": list(METHODS)}
    for method in ("map", "hmc-gaussian"):
        np.testing.assert_array_equal(
            result.posteriors[method].predict_proba(data.x_test),
            before[method].predict_proba(data.x_test),
        )


@pytest.mark.parametrize("change", ["other settings", "resume=False"])
def test_a_rerun_fits_everything_again_with_other_settings_or_without_resume(
    tmp_path, monkeypatch, change
):
    fake_fits(monkeypatch)
    cp.compare_priors(SETTINGS, tmp_path, progress=False)
    fitted = fake_fits(monkeypatch)
    if change == "resume=False":
        cp.compare_priors(SETTINGS, tmp_path, progress=False, resume=False)
    else:
        cp.compare_priors(dataclasses.replace(SETTINGS, seed=SETTINGS.seed + 1), tmp_path,
                          progress=False)  # fmt: skip
    assert fitted == list(METHODS)


def test_the_command_resumes_unless_told_fresh(tmp_path, monkeypatch, capsys):
    args = ["compare-priors", "--dataset", "digits", "--n-train", "100", "--n-test", "60"]
    args += ["--hidden", "8", "--priors", "gaussian", "--seed", "3", "--quiet"]
    args += ["--out", str(tmp_path)]
    fake_fits(monkeypatch)
    assert main(args) == 0
    fitted = fake_fits(monkeypatch)
    assert main(args) == 0 and fitted == []
    assert "map: resuming from" in capsys.readouterr().out
    assert main([*args, "--fresh"]) == 0 and fitted == ["map", "hmc-gaussian"]


def test_a_longer_rerun_extends_the_saved_chains_to_what_a_fresh_run_gives(tmp_path):
    short = dataclasses.replace(CONFIG, include_map=False, n_iterations=3, n_burnin=1)
    longer = dataclasses.replace(short, n_iterations=5)
    cp.compare_priors(short, tmp_path / "extended", progress=False)
    assert (tmp_path / "extended" / "chains" / "hmc-gaussian" / "checkpoint.npz").is_file()
    extended = cp.compare_priors(longer, tmp_path / "extended", progress=False)
    fresh = cp.compare_priors(longer, tmp_path / "fresh", progress=False)
    ours, theirs = extended.posteriors["hmc-gaussian"], fresh.posteriors["hmc-gaussian"]
    assert ours.n_draws == theirs.n_draws == longer.n_chains * (5 - 1)
    for a, b in zip(jax.tree.leaves(ours.draws), jax.tree.leaves(theirs.draws), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    fresh_again = cp.compare_priors(short, tmp_path / "extended", progress=False, resume=False)
    # the longer chains were removed, not refused as longer than asked
    assert fresh_again.posteriors["hmc-gaussian"].n_draws == short.n_chains * (3 - 1)


def test_chains_of_a_run_with_other_settings_are_replaced_with_a_warning(tmp_path):
    short = dataclasses.replace(CONFIG, include_map=False, n_iterations=3, n_burnin=1)
    cp.compare_priors(short, tmp_path, progress=False)
    other_step = dataclasses.replace(short, step_size=short.step_size / 2)
    earlier = r"hmc-gaussian chains of an earlier run with other settings \(.*step_size: 0.001 "
    with pytest.warns(UserWarning, match=earlier):
        result = cp.compare_priors(other_step, tmp_path, progress=False)
    fresh = cp.compare_priors(other_step, tmp_path / "fresh", progress=False)
    ours, theirs = result.posteriors["hmc-gaussian"], fresh.posteriors["hmc-gaussian"]
    for a, b in zip(jax.tree.leaves(ours.draws), jax.tree.leaves(theirs.draws), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
