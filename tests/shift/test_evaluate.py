"""Tests for bnn_shift.shift.evaluate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from bnn_shift.shift import (
    COLUMNS,
    Predictor,
    Shift,
    evaluate,
    noise_sweep,
    pivot_metric,
    summarise,
)

N, K = 40, 3
X = np.random.default_rng(0).normal(size=(N, 4, 4, 1)).astype(np.float32)
Y = np.array([0] * 10 + [1] * 20 + [2] * 10)  # a quarter are class 0


class Constant:
    """Predicts the same probability vector for every input."""

    def __init__(self, p):
        self.p = np.asarray(p, dtype=np.float64)
        self.chunks: list[int] = []

    def predict_proba(self, x):
        self.chunks.append(x.shape[0])
        return np.tile(self.p, (x.shape[0], 1))


class MeanPixel:
    """A JAX predictor whose output depends on the input: softmax of a linear score."""

    def predict_proba(self, x):
        m = jnp.mean(jnp.asarray(x).reshape(x.shape[0], -1), axis=1)  # (n,)
        return jax.nn.softmax(jnp.stack([m, -m, 0 * m], axis=1))  # (n, 3)


class Draws:
    """Per-draw probabilities (draws, n, k)."""

    def predict_proba(self, x):
        n = x.shape[0]
        return np.stack([np.tile([1.0, 0.0, 0.0], (n, 1)), np.tile([0.0, 1.0, 0.0], (n, 1))])


def test_tidy_table_shape_and_columns():
    methods = {"const": Constant([0.7, 0.2, 0.1]), "jax": MeanPixel()}
    shifts = noise_sweep((0.0, 1.0, 2.0))
    table = evaluate(methods, X, Y, shifts, progress=False)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == 2 * 3 * 4
    assert not table.duplicated(["method", "shift", "severity", "metric"]).any()
    assert set(table["metric"]) == {"accuracy", "nll", "ece", "brier"}
    assert table["value"].dtype == np.float64
    assert np.all(np.isfinite(table["value"]))


def test_constant_predictor_known_values():
    table = evaluate(
        {"const": Constant([0.7, 0.2, 0.1])}, X, Y, noise_sweep((0.0, 3.0)), progress=False
    )
    for _, by_severity in table.groupby("severity"):
        v = dict(zip(by_severity["metric"], by_severity["value"], strict=True))
        assert v["accuracy"] == pytest.approx(0.25)
        nll = -(10 * np.log(0.7) + 20 * np.log(0.2) + 10 * np.log(0.1)) / N
        assert v["nll"] == pytest.approx(nll)
        # Every confidence is 0.7 and tied confidences share one bin.
        assert v["ece"] == pytest.approx(0.7 - 0.25)
        # Squared error per class-0, class-1, class-2 example.
        b0, b1, b2 = 0.09 + 0.04 + 0.01, 0.49 + 0.64 + 0.01, 0.49 + 0.04 + 0.81
        assert v["brier"] == pytest.approx((10 * b0 + 20 * b1 + 10 * b2) / N)


def test_each_shift_applied_once_and_batching():
    calls = []

    def apply(x):
        calls.append(x.shape)
        return x + 1.0

    a, b = Constant([0.2, 0.5, 0.3]), Constant([0.2, 0.5, 0.3])
    shifts = [Shift("plus_one", 1.0, apply), Shift("identity", 0.0, lambda x: x)]
    batched = evaluate({"a": a, "b": b}, X, Y, shifts, batch_size=16, progress=False)
    assert calls == [X.shape]
    assert a.chunks == [16, 16, 8, 16, 16, 8]
    whole = evaluate({"a": a, "b": b}, X, Y, shifts, progress=False)
    pd.testing.assert_frame_equal(batched, whole)


def test_batching_matches_unbatched_for_input_dependent_model():
    shifts = noise_sweep((0.0, 1.0))
    t1 = evaluate({"m": MeanPixel()}, X, Y, shifts, batch_size=7, progress=False)
    t2 = evaluate({"m": MeanPixel()}, X, Y, shifts, progress=False)
    np.testing.assert_allclose(t1["value"], t2["value"], rtol=1e-6)


def test_per_draw_output_is_averaged():
    table = evaluate({"d": Draws()}, X, Y, noise_sweep((0.0,)), ["nll"], progress=False)
    # BMA is (0.5, 0.5, 0); class-2 examples hit the 1e-12 floor.
    expected = (30 * -np.log(0.5) + 10 * -np.log(1e-12)) / N
    assert table["value"].iloc[0] == pytest.approx(expected)


def test_progress_bar_runs(capsys):
    evaluate({"c": Constant([0.5, 0.3, 0.2])}, X, Y, noise_sweep((0.0,)), progress=True)
    assert "evaluate" in capsys.readouterr().err


def test_protocol():
    assert isinstance(Constant([1.0, 0, 0]), Predictor)
    assert not isinstance(object(), Predictor)


C = {"c": Constant([1.0, 0, 0])}
ALL = noise_sweep()


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (({}, X, Y, ALL), {}, ValueError, "methods is empty"),
        ((C, X, Y[:-1], ALL), {}, ValueError, "40 examples but y has 39"),
        ((C, X, Y, []), {}, ValueError, "shifts is empty"),
        ((C, X, Y, ALL), {"metrics": ["auc"]}, ValueError, "unknown metrics"),
        ((C, X, Y, ALL), {"batch_size": 0}, ValueError, "batch_size"),
        (({"c": object()}, X, Y, ALL), {}, TypeError, "'c' has no predict_proba"),
        ((C, X, Y, noise_sweep((1.0, 1.0))), {}, ValueError, "repeated"),
        (
            ({"bad": Constant([0.9, 0.9, 0.9])}, X, Y, ALL[:1]),
            {},
            ValueError,
            "method 'bad'.*sum to 1",
        ),
        ((C, X, Y, [Shift("drop", 1.0, lambda x: x[1:])]), {}, ValueError, "changed the number"),
    ],
)
def test_validation_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        evaluate(*args, progress=False, **kwargs)


def test_summarise_and_pivot_metric():
    methods = {"b_const": Constant([0.7, 0.2, 0.1]), "a_jax": MeanPixel()}
    table = evaluate(methods, X, Y, noise_sweep((0.0, 1.0, 2.0)), progress=False)
    wide = summarise(table)
    assert wide.shape == (3, 8)
    assert list(wide.index.names) == ["shift", "severity"]
    assert list(wide.columns.names) == ["metric", "method"]
    metrics = list(wide.columns.get_level_values("metric").unique())
    assert metrics == ["accuracy", "nll", "ece", "brier"]
    assert list(wide.columns.get_level_values("method")[:2]) == ["b_const", "a_jax"]
    assert wide.loc[("gaussian_noise", 0.0), ("accuracy", "b_const")] == pytest.approx(0.25)

    acc = pivot_metric(table, "accuracy")
    assert list(acc.index) == [0.0, 1.0, 2.0]
    assert list(acc.columns) == ["b_const", "a_jax"]
    assert acc.loc[1.0, "b_const"] == pytest.approx(0.25)

    with pytest.raises(ValueError, match="metric 'auc'"):
        pivot_metric(table, "auc")
    two = pd.concat([table, table.assign(shift="other")])
    with pytest.raises(ValueError, match="several shifts"):
        pivot_metric(two, "nll")
    assert pivot_metric(two, "nll", shift="other").shape == (3, 2)
    with pytest.raises(ValueError, match="missing columns"):
        summarise(table.drop(columns="severity"))
