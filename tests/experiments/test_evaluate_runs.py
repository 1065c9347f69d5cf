"""`evaluate_runs`: saved compare-priors posteriors scored under a shift set."""

from __future__ import annotations

import numpy as np
import pytest

from bnn_shift.experiments.compare_priors import load_data
from bnn_shift.experiments.evaluate_runs import (
    evaluate_runs,
    load_run,
    make_shifts,
    read_run_config,
    write_evaluation,
)
from bnn_shift.shift import COLUMNS

from .saved_run import CONFIG, write_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "run-a"
    data, posteriors = write_run(path)
    return path, data, posteriors


def test_read_run_config_and_load_run(run):
    path, data, posteriors = run
    config, resolved = read_run_config(path)
    assert config == CONFIG
    assert resolved == {"dataset": "digits", "n_train": 100, "n_test": 60}
    saved = load_run(path, data)
    assert list(saved.posteriors) == ["map", "hmc-gaussian"]  # the run's fitting order
    for name, post in saved.posteriors.items():
        np.testing.assert_allclose(
            post.predict_proba(data.x_test), posteriors[name].predict_proba(data.x_test), atol=1e-6
        )


def test_evaluate_runs_noise(run, tmp_path):
    path, _, _ = run
    result = evaluate_runs([path], severities=(1.0, 2.0), n_test=30, progress=False)
    table = result.table
    assert list(table.columns) == list(COLUMNS)
    assert result.n_test == 30 and result.dataset == "digits"
    assert sorted(set(table["severity"])) == [0.0, 1.0, 2.0]  # clean added
    assert list(table["method"].unique()) == ["map", "hmc-gaussian"]
    mi = table[table["metric"] == "mutual_info"].set_index(["method", "severity"])["value"]
    assert (mi.loc["map"] == 0).all() and (mi.loc["hmc-gaussian"] > 0).all()
    assert set(result.reliability) == {"clean", "shifted"}
    assert result.reliability["shifted"]["map"].n == 2 * 30  # two shifted sets pooled
    assert result.summary.overall.shape == (2, 2 * 7)
    names = {p.name for p in write_evaluation(result, tmp_path)}
    assert {"metrics.csv", "summary.csv", "accuracy.png", "reliability_clean.png"} <= names
    assert all((tmp_path / n).stat().st_size > 0 for n in names)


def test_two_runs_and_a_corruption_benchmark_with_cache(run, tmp_path, monkeypatch):
    monkeypatch.setenv("BNN_SHIFT_DATA", str(tmp_path / "home"))
    path, _, _ = run
    other = tmp_path / "run-b"
    write_run(other)
    kwargs = dict(shifts="mnist-c", corruptions=["stripe"], n_test=20, progress=False)
    result = evaluate_runs([path, other], cache=True, **kwargs)
    assert list(result.table["method"].unique()) == [
        "run-a/map",
        "run-a/hmc-gaussian",
        "run-b/map",
        "run-b/hmc-gaussian",
    ]
    assert list(result.table["shift"].unique()) == ["clean", "stripe"]
    assert any((tmp_path / "home" / "corrupted").iterdir())  # the cache was filled
    # Cached sets are uint8-quantised: the same metrics as corrupting in memory, within
    # half a grey level's effect.
    fresh = evaluate_runs([path], **kwargs).table
    cached = result.table[result.table["method"].str.startswith("run-a/")]
    np.testing.assert_allclose(cached["value"], fresh["value"], atol=0.05)
    with pytest.raises(ValueError, match="two runs give the method name"):
        evaluate_runs([path, path], **kwargs)


def test_make_shifts():
    data = load_data(CONFIG)
    noise = make_shifts("noise", data, severities=(0.5,))
    assert [(s.name, s.severity) for s in noise] == [
        ("gaussian_noise", 0.0),
        ("gaussian_noise", 0.5),
    ]
    corrupted = make_shifts("mnist-c", data, ["shot_noise", "rotate"], severities=(1, 2))
    assert [(s.name, s.severity) for s in corrupted] == [
        ("clean", 0.0),
        ("shot_noise", 1),
        ("shot_noise", 2),
        ("rotate", 1),
        ("rotate", 2),
    ]
    np.testing.assert_array_equal(corrupted[0].apply(data.x_test), data.x_test)
    with pytest.raises(ValueError, match="--corruptions applies"):
        make_shifts("noise", data, corruptions=["fog"])
    with pytest.raises(ValueError, match="unknown shift set"):
        make_shifts("imagenet-c", data)
    with pytest.raises(ValueError, match="integers"):
        make_shifts("mnist-c", data, ["fog"], severities=(1.5,))


def test_not_a_run_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        read_run_config(tmp_path)
    with pytest.raises(ValueError, match="at least one run"):
        evaluate_runs([])
