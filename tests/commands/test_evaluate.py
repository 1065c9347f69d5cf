"""`bnn-shift evaluate` end to end on a saved digits run (written like compare-priors')."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from experiments.saved_run import write_run  # tests/ is on sys.path (rootdir-relative)

from bnn_shift.cli import main
from bnn_shift.shift import COLUMNS


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "run-a"
    write_run(path)
    return path


def test_noise_end_to_end(run, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["evaluate", str(run), "--severities", "0,1.5", "--quiet", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "clean vs mean over corruptions" in printed.out and "hmc-gaussian" in printed.out
    assert printed.err == ""  # --quiet: no progress bar
    table = pd.read_csv(out / "metrics.csv")
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == 2 * 2 * 7  # methods x severities x metrics
    for name in (
        "summary.csv",
        "per_severity.csv",
        "per_corruption.csv",
        "accuracy.png",
        "ece.png",
        "reliability_clean.png",
        "reliability_shifted.png",
    ):
        assert (out / name).stat().st_size > 0, name
    settings = json.loads((out / "settings.json").read_text())
    assert settings["n_test"] == 60 and settings["severities"] == [0.0, 1.5]
    summary = pd.read_csv(out / "summary.csv", header=[0, 1], index_col=0)
    clean_acc = table.query("method == 'map' and severity == 0 and metric == 'accuracy'")
    assert summary.loc["map", ("accuracy", "clean")] == pytest.approx(clean_acc["value"].item())


def test_mnist_c_default_out_dir(run, capsys):
    args = ["evaluate", str(run), "--shifts", "mnist-c", "--corruptions", "stripe,shot_noise"]
    assert main([*args, "--n-test", "20", "--quiet"]) == 0
    out = run / "evaluate-mnist-c"
    table = pd.read_csv(out / "metrics.csv")
    assert list(pd.unique(table["shift"])) == ["clean", "stripe", "shot_noise"]
    assert set(table.loc[table["shift"] != "clean", "severity"]) == {5.0, 1.0}  # release levels
    assert (out / "accuracy_by_corruption.png").stat().st_size > 0
    # MNIST-C's release holds each corruption at one level: no severity curves.
    assert not (out / "accuracy.png").exists()
    assert "mean over severities by corruption" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path, run, capsys):
    assert main(["evaluate", str(tmp_path)]) == 1
    assert "no config.json" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--corruptions", "fog", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "--corruptions applies to mnist-c" in err and "Traceback" not in err
