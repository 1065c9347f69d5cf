"""Tests for bnn_shift.shift.evaluate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from bnn_shift.data import Dataset
from bnn_shift.shift import (
    COLUMNS,
    OOD_COLUMNS,
    Predictor,
    Shift,
    evaluate,
    noise_sweep,
    ood_scores,
    pivot_metric,
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
    table = evaluate(methods, (X, Y), shifts, progress=False)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == 2 * 3 * 4
    assert not table.duplicated(["method", "shift", "severity", "metric"]).any()
    assert set(table["metric"]) == {"accuracy", "nll", "ece", "brier"}
    assert table["value"].dtype == np.float64
    assert np.all(np.isfinite(table["value"]))


def test_constant_predictor_known_values():
    table = evaluate(
        {"const": Constant([0.7, 0.2, 0.1])}, (X, Y), noise_sweep((0.0, 3.0)), progress=False
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
    batched = evaluate({"a": a, "b": b}, (X, Y), shifts, batch_size=16, progress=False)
    assert calls == [X.shape]
    assert a.chunks == [16, 16, 8, 16, 16, 8]
    whole = evaluate({"a": a, "b": b}, (X, Y), shifts, progress=False)
    pd.testing.assert_frame_equal(batched, whole)


def test_batching_matches_unbatched_for_input_dependent_model():
    shifts = noise_sweep((0.0, 1.0))
    t1 = evaluate({"m": MeanPixel()}, (X, Y), shifts, batch_size=7, progress=False)
    t2 = evaluate({"m": MeanPixel()}, (X, Y), shifts, progress=False)
    np.testing.assert_allclose(t1["value"], t2["value"], rtol=1e-6)


def test_per_draw_output_is_averaged():
    table = evaluate({"d": Draws()}, (X, Y), noise_sweep((0.0,)), metrics=["nll"], progress=False)
    assert list(table["metric"]) == ["nll"]
    # BMA is (0.5, 0.5, 0); class-2 examples hit the 1e-12 floor.
    expected = (30 * -np.log(0.5) + 10 * -np.log(1e-12)) / N
    assert table["value"].iloc[0] == pytest.approx(expected)


def test_progress_bar_runs(capsys):
    evaluate({"c": Constant([0.5, 0.3, 0.2])}, (X, Y), noise_sweep((0.0,)), progress=True)
    assert "evaluate" in capsys.readouterr().err


def test_protocol():
    assert isinstance(Constant([1.0, 0, 0]), Predictor)
    assert not isinstance(object(), Predictor)


C = {"c": Constant([1.0, 0, 0])}
ALL = noise_sweep()


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (({}, (X, Y), ALL), {}, ValueError, "methods is empty"),
        ((C, (X, Y[:-1]), ALL), {}, ValueError, "40 examples but y has 39"),
        ((C, (X, Y), []), {}, ValueError, "shifts is empty"),
        ((C, (X, Y), ALL), {"metrics": ["auc"]}, ValueError, "unknown metrics"),
        ((C, (X, Y), ALL), {"batch_size": 0}, ValueError, "batch_size"),
        (({"c": object()}, (X, Y), ALL), {}, TypeError, "'c' has no predict_proba"),
        ((C, (X, Y), noise_sweep((1.0, 1.0))), {}, ValueError, "repeated"),
        (
            ({"bad": Constant([0.9, 0.9, 0.9])}, (X, Y), ALL[:1]),
            {},
            ValueError,
            "method 'bad'.*sum to 1",
        ),
        ((C, (X, Y), [Shift("drop", 1.0, lambda x: x[1:])]), {}, ValueError, "changed the number"),
    ],
)
def test_validation_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        evaluate(*args, progress=False, **kwargs)


def test_pivot_metric():
    methods = {"b_const": Constant([0.7, 0.2, 0.1]), "a_jax": MeanPixel()}
    table = evaluate(methods, (X, Y), noise_sweep((0.0, 1.0, 2.0)), progress=False)
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
        pivot_metric(table.drop(columns="severity"), "nll")


def _dataset() -> Dataset:
    return Dataset("toy", X[:12], Y[:12], X, Y, n_classes=K)


def test_dataset_and_pair_forms_match_and_the_retired_form_is_refused():
    shifts = noise_sweep((0.0, 1.0))
    methods = {"m": MeanPixel()}
    pair = evaluate(methods, (X, Y), shifts, progress=False)
    pd.testing.assert_frame_equal(evaluate(methods, _dataset(), shifts, progress=False), pair)
    with pytest.raises(
        TypeError, match=r"a pair \(x, y\), as in evaluate\(methods, \(x, y\), shifts\)"
    ):
        evaluate(methods, X, shifts, progress=False)
    with pytest.raises(TypeError, match="positional"):
        evaluate(methods, X, Y, shifts, progress=False)  # the retired (methods, x, y, shifts)
    with pytest.raises(TypeError, match="positional"):
        evaluate(methods, _dataset(), shifts, ["nll"], progress=False)


def test_uncertainty_metrics_exact_values():
    metrics = ["accuracy", "entropy", "mutual_info", "mce", "ece_equal_width"]
    table = evaluate(
        {"d": Draws()}, _dataset(), noise_sweep((0.0, 1.0)), metrics=metrics, progress=False
    )
    assert len(table) == 2 * len(metrics)
    for _, rows in table.groupby("severity"):
        v = dict(zip(rows["metric"], rows["value"], strict=True))
        # BMA (0.5, 0.5, 0): argmax class 0 (first on ties) is right for a quarter.
        assert v["accuracy"] == pytest.approx(0.25)
        # Entropy of (0.5, 0.5, 0) is log 2; the two one-hot draws disagree fully, so the
        # mean per-draw entropy is 0 and MI = log 2.
        assert v["entropy"] == pytest.approx(np.log(2))
        assert v["mutual_info"] == pytest.approx(np.log(2))
        # One confidence (0.5) for everyone, accuracy 0.25: one non-empty bin either way.
        assert v["mce"] == pytest.approx(0.25)
        assert v["ece_equal_width"] == pytest.approx(0.25)


def test_mutual_info_skipped_with_a_warning_for_point_predictors():
    methods = {"c": Constant([0.7, 0.2, 0.1]), "d": Draws()}
    with pytest.warns(UserWarning, match=r"\['c'\].*mutual_info"):
        table = evaluate(
            methods, _dataset(), noise_sweep((0.0,)), metrics=["nll", "mutual_info"], progress=False
        )
    assert list(zip(table["method"], table["metric"])) == [
        ("c", "nll"),
        ("d", "nll"),
        ("d", "mutual_info"),
    ]


def test_callback_sees_model_averages():
    seen = []
    with pytest.warns(UserWarning, match="no per-draw"):
        evaluate(
            {"d": Draws(), "c": Constant([0.2, 0.5, 0.3])},
            _dataset(),
            noise_sweep((0.0, 2.0)),
            metrics=["mutual_info"],
            callback=lambda *a: seen.append(a),
            progress=False,
        )
    assert [(m, s.severity) for m, s, _, _ in seen] == [
        ("d", 0.0),
        ("c", 0.0),
        ("d", 2.0),
        ("c", 2.0),
    ]
    for _, _, probs, labels in seen:
        assert probs.shape == (N, K)
        np.testing.assert_array_equal(labels, Y)
    np.testing.assert_allclose(seen[0][2], np.tile([0.5, 0.5, 0.0], (N, 1)))


class DrawMethod(Constant):
    """A point predictor that also offers per-draw output via predict_proba_draws."""

    def predict_proba_draws(self, x):
        return np.stack([self.predict_proba(x)] * 3)


def test_predict_proba_draws_protocol_gives_zero_mi():
    table = evaluate(
        {"p": DrawMethod([0.6, 0.3, 0.1])},
        _dataset(),
        noise_sweep((0.0,)),
        metrics=["mutual_info", "entropy"],
        batch_size=16,
        progress=False,
    )
    mi, h = table["value"]
    assert mi == pytest.approx(0.0, abs=1e-15)
    assert h == pytest.approx(-(0.6 * np.log(0.6) + 0.3 * np.log(0.3) + 0.1 * np.log(0.1)))


class NumpyMeanPixel:
    """MeanPixel in numpy (no compilation per input shape)."""

    def predict_proba(self, x):
        m = x.reshape(x.shape[0], -1).mean(axis=1)  # (n,)
        z = np.exp(np.stack([m, -m, 0 * m], axis=1))
        return z / z.sum(axis=1, keepdims=True)  # (n, 3)


def test_ood_scores_known_values():
    # Input-dependent model: confident far from 0, uniform at 0.
    near = np.zeros((20, 4, 4, 1), np.float32)  # score 0 -> uniform over 3 classes
    far = np.full((30, 4, 4, 1), 5.0, np.float32)  # confident
    table = ood_scores(
        {"m": NumpyMeanPixel(), "c": Constant([0.5, 0.3, 0.2])},
        far,
        {"near": near, "far": far},
        scores=["entropy", "confidence"],
        progress=False,
    )
    assert list(table.columns) == list(OOD_COLUMNS)
    assert len(table) == 2 * 2 * 2 * 2
    v = table.set_index(["method", "ood", "score", "metric"])["value"]
    assert v[("m", "near", "entropy", "auroc")] == pytest.approx(1.0)
    assert v[("m", "near", "entropy", "aupr")] == pytest.approx(1.0)
    # Identical in-distribution and OOD scores: AUROC 1/2, AUPR = OOD fraction.
    assert v[("m", "far", "entropy", "auroc")] == pytest.approx(0.5)
    assert v[("c", "near", "confidence", "auroc")] == pytest.approx(0.5)
    assert v[("c", "near", "confidence", "aupr")] == pytest.approx(20 / 50)
    with pytest.warns(UserWarning, match="mutual_info skipped"):
        only = ood_scores(
            {"c": Constant([0.5, 0.3, 0.2])}, far, near, scores=["mutual_info"], progress=False
        )
    assert only.empty
    with pytest.raises(ValueError, match="unknown scores"):
        ood_scores({"m": NumpyMeanPixel()}, far, near, scores=["energy"], progress=False)
