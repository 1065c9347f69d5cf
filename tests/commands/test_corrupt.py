"""`bnn-shift corrupt` on a small MNIST subset: the layout, the manifest, re-runs, errors; and
compare-priors scoring its fits on the same corruptions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bnn_shift.cli import main
from bnn_shift.data.mnist import local_mnist_dir
from bnn_shift.shift import load_mnist_c

_SHARED_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
# the shared copy, else $BNN_SHIFT_MNIST_DIR or what load_mnist fetched into its cache
MNIST_DIR = local_mnist_dir(_SHARED_MNIST) or _SHARED_MNIST
pytestmark = pytest.mark.skipif(local_mnist_dir(MNIST_DIR) is None, reason="no MNIST copy")


def test_corrupt_mnist_subset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "mnist-c"
    args = ["corrupt", "--dataset", "mnist", "--out", str(out), "--data-dir", str(MNIST_DIR)]
    args += ["--corruptions", "stripe,translate", "--severities", "1,3", "--n-test", "40"]
    assert main([*args, "--seed", "2", "--quiet"]) == 0
    printed = capsys.readouterr()
    assert "wrote 3 corrupted sets of 40 mnist test images" in printed.out
    assert printed.err == ""  # --quiet: no progress bar
    assert sorted(p.name for p in out.iterdir()) == [
        "config.toml",  # the settings, to repeat the run with --config
        "manifest.json",
        "stripe",
        "translate",
        "translate-s1",
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 2 and manifest["dataset"] == "mnist" and manifest["n"] == 40
    cset = load_mnist_c(out)
    assert cset.keys == [("translate", 1), ("translate", 3), ("stripe", 1)]
    stripe = cset.images("stripe")
    assert stripe.shape == (40, 28, 28, 1) and stripe.dtype == np.uint8
    assert np.bincount(cset.labels, minlength=10).min() >= 3  # stratified subset

    before = (out / "stripe" / "test_images.npy").stat().st_mtime_ns
    assert main([*args, "--seed", "2"]) == 0  # a re-run keeps what is there
    assert (out / "stripe" / "test_images.npy").stat().st_mtime_ns == before
    assert "corrupt mnist" in capsys.readouterr().err  # the progress bar


def test_corrupt_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["corrupt", "--dataset", "mnist", "--out", str(tmp_path), "--quiet"]
    base += ["--data-dir", str(MNIST_DIR), "--n-test", "20"]
    assert main([*base, "--corruptions", "no_such_thing"]) == 1
    assert "valid names" in capsys.readouterr().err
    assert main([*base, "--corruptions", "zigzag", "--severities", "4"]) == 1
    assert "zigzag has severities (1,)" in capsys.readouterr().err


def test_compare_priors_scores_its_fits_on_mnist_c(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["compare-priors", "--dataset", "mnist", "--data-dir", str(MNIST_DIR), "--quiet",
            "--n-train", "200", "--n-test", "40", "--hidden", "16", "--map-epochs", "50",
            "--noise", "0,1", "--methods", "map", "--corruptions", "mnist-c"]  # fmt: skip
    args += ["--out", str(out)]
    assert main(args) == 0
    assert "clean vs mean over mnist-c" in capsys.readouterr().out
    table = pd.read_csv(out / "metrics-mnist-c.csv")
    assert len(set(table["shift"])) == 15 and set(table.method) == {"map"}
    acc = table[table.metric == "accuracy"].set_index("shift").value
    assert acc.between(0, 1).all()
