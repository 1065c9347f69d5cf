"""Tests for bnn_shift.experiments.icl: the task, its baseline, the variants and a tiny run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bnn_shift.experiments.icl import (
    ICLConfig,
    active_dims,
    least_squares_errors,
    mlr_ranks,
    regression_batch,
    run_icl,
    variant_options,
)


def test_mlr_ranks_follow_the_paper_pattern():
    assert mlr_ranks(32) == (8, 4, 4, 16)  # the paper's D = 256, H = 8 configuration
    assert mlr_ranks(8) == (2, 1, 1, 4)
    assert mlr_ranks(4) == (1, 1, 1, 1)
    assert mlr_ranks(2) == (1, 1)
    assert mlr_ranks(1) == (1,)
    for r in range(1, 65):
        assert sum(mlr_ranks(r)) == r and min(mlr_ranks(r)) >= 1


def test_variant_options():
    assert variant_options("standard-1head", 64, 8)["n_heads"] == 1
    assert variant_options("bilinear-mlr", 64, 8)["scorer_options"] == {"ranks": (2, 1, 1, 4)}
    with pytest.raises(ValueError, match="unknown ICL variant"):
        variant_options("linear", 64, 8)
    with pytest.raises(ValueError, match="not divisible by n_heads=8"):
        ICLConfig(widths=(12,))


def test_active_dims_curriculum():
    assert [active_dims(s, 100, 16, 0.5) for s in (0, 25, 49, 50, 99)] == [4, 10, 16, 16, 16]
    assert active_dims(0, 100, 16, 0.0) == 16
    assert active_dims(0, 100, 2, 0.5) == 2


def test_regression_batch_statistics():
    points = regression_batch(np.random.default_rng(0), 4000, 3, 8, active=5)
    xs, ys = points[..., :8], points[..., 8]
    assert points.shape == (4000, 3, 9) and points.dtype == np.float32
    assert np.all(xs[..., 5:] == 0)
    # x ~ N(0, I/5) on 5 dims, w ~ N(0, I): E[y^2] = 1; SE of the mean of 12,000 y^2 is ~0.03
    assert abs(np.mean(ys**2) - 1.0) < 0.1
    assert abs(np.mean(xs[..., :5] ** 2) * 5 - 1.0) < 0.05


def test_least_squares_is_exact_once_it_has_d_points():
    points = regression_batch(np.random.default_rng(1), 64, 10, 4)
    errors = least_squares_errors(points)
    assert errors.shape == (10,)
    assert errors[0] > 0.5 and np.all(errors[1:4] > 1e-3)
    np.testing.assert_allclose(errors[4:], 0.0, atol=1e-10)


@pytest.mark.slow
def test_tiny_run_end_to_end(tmp_path):
    config = ICLConfig(
        d_inputs=(4,),
        widths=(8,),
        variants=("bilinear-mlr",),
        n_heads=2,
        depth=1,
        steps=3,
        batch_size=4,
        warmup=1,
        n_eval=8,
    )
    result = run_icl(config, out_dir=tmp_path, progress=False)
    table = pd.read_csv(tmp_path / "results.csv")
    assert list(table.variant) == ["bilinear-mlr"] and list(table.n_heads) == [2]
    assert np.isfinite(table.last_error[0]) and table.zero_predictor_error[0] > 0
    # bilinear MLR (head dim 4, ranks 1|1|1|1) scores with sum_l r_l p_l = 1 + 2 + 4 + 8 = 15
    # dims per head and mixes values of 4 dims; T = 16 tokens, 2 heads
    t, params = 16, table.non_embedding_params[0]
    assert params == 12 * 8 * 8  # the same as standard attention's
    assert table.flops_per_token[0] == 2 * params + 2 * (2 * t * 15 + 2 * t * 4)
    assert table.train_compute[0] == table.flops_per_token[0] * 4 * t * 3
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert set(curves.variant) == {"bilinear-mlr", "least-squares"}
    assert len(curves) == 2 * 8  # the model and the baseline, 8 positions each
    assert (tmp_path / "icl.png").stat().st_size > 0 and (tmp_path / "curves.png").exists()
    assert len(result.table) == 1
