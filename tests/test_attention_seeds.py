"""benchmarks/attention_seeds.py: tiny real ICL runs over two seeds, pooled per configuration,
and a rerun that finds every seed done."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.append(str(Path(__file__).parents[1] / "benchmarks"))  # after the package

import attention_seeds

TINY = ["--d-inputs", "4", "--widths", "8", "--variants", "standard,btt", "--steps", "3",
        "--warmup", "1", "--n-eval", "16", "--batch-size", "4"]  # fmt: skip


@pytest.mark.slow
def test_seeds_are_run_pooled_and_resumed(tmp_path, monkeypatch):
    tables = {s: pd.read_csv(attention_seeds.run_seed("icl", s, tmp_path, TINY)) for s in (0, 1)}
    summary = attention_seeds.pool_seeds("icl", tables)
    assert list(summary.variant) == ["standard", "btt"] and (summary.seeds == 2).all()
    for _, row in summary.iterrows():
        errors = [t.set_index("variant").last_error[row.variant] for t in tables.values()]
        assert row.last_error_mean == pytest.approx(np.mean(errors))
        assert row.last_error_std == pytest.approx(np.std(errors, ddof=1))
        assert row.last_error_min == min(errors) and row.last_error_max == max(errors)
        left = sum(
            t.set_index("variant").last_error[row.variant]
            < 0.9 * t.set_index("variant").zero_predictor_error[row.variant]
            for t in tables.values()
        )
        assert row.seeds_left_plateau == left

    def no_run(*args, **kwargs):
        raise AssertionError("a finished seed was run again")

    monkeypatch.setattr(subprocess, "run", no_run)
    assert attention_seeds.run_seed("icl", 1, tmp_path, TINY) == tmp_path / "seed-1/results.csv"


def test_the_flags_after_a_double_dash_go_to_the_experiment():
    argv = ["icl", "--seeds", "0,1", "--out", "runs/x", "--", "--d-inputs", "8", "--steps", "5"]
    args, flags = attention_seeds.parse_args(argv)
    assert (args.experiment, args.seeds, args.out) == ("icl", "0,1", Path("runs/x"))
    assert flags == ["--d-inputs", "8", "--steps", "5"]
    assert attention_seeds.parse_args(["lm", "--out", "o"])[1] == []
