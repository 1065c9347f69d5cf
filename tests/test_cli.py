"""End-to-end: the `bnn-shift` command on the embedded digits data with tiny settings."""

import json

import jax
import pandas as pd
import pytest

from bnn_shift.cli import main, one_line
from bnn_shift.data import load_digits
from bnn_shift.inference import Posterior
from bnn_shift.models import MLP

TINY = [
    "compare-priors",
    "--dataset",
    "digits",
    "--n-train",
    "300",
    "--n-test",
    "100",
    "--hidden",
    "16",
    "--n-iterations",
    "4",
    "--n-burnin",
    "1",
    "--map-epochs",
    "10",
    "--noise",
    "0,2",
    "--quiet",
]


def test_compare_priors_digits_smoke(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy vs noise std" in printed and "hmc-empcov" in printed

    table = pd.read_csv(out / "metrics.csv")
    assert list(table.columns) == ["method", "shift", "severity", "metric", "value"]
    assert set(table.method) == {"map", "hmc-gaussian", "hmc-empcov"}
    assert set(table.severity) == {0.0, 2.0}
    assert len(table) == 3 * 2 * 4
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"] == {"dataset": "digits", "n_train": 300, "n_test": 100}
    assert (out / "accuracy.png").stat().st_size > 0

    data = load_digits()
    model_like = MLP(data.n_features, (16,), data.n_classes, key=jax.random.key(1))
    posterior = Posterior.load(out / "posterior-hmc-empcov.nc", model_like)
    assert posterior.attrs["method"] == "hmc"
    assert posterior.predict_proba(data.x_test[:5]).shape == (5, 10)


@pytest.mark.parametrize("sampler", ["mala", "mclmc", "mile"])
def test_compare_priors_runs_another_sampler(tmp_path, capsys, sampler):
    """--sampler mala / mclmc: engines added through the architecture recipe, one run per
    prior."""
    out = tmp_path / "run"
    args = [*TINY, "--sampler", sampler, "--priors", "empcov", "--no-map", "--step-size", "1e-3"]
    assert main([*args, "--out", str(out)]) == 0
    assert set(pd.read_csv(out / "metrics.csv").method) == {f"{sampler}-empcov"}
    data = load_digits()
    model_like = MLP(data.n_features, (16,), data.n_classes, key=jax.random.key(1))
    posterior = Posterior.load(out / f"posterior-{sampler}-empcov.nc", model_like)
    assert posterior.attrs["method"] == sampler and posterior.kind == "chain"
    assert posterior.n_draws > 0


@pytest.mark.slow
def test_compare_priors_fits_swag_baselines(tmp_path, capsys):
    """--baselines swag,multiswag: SWAG from the MAP fit, MultiSWAG from three MAP fits."""
    out = tmp_path / "run"
    args = [*TINY, "--priors", "gaussian", "--baselines", "swag,multiswag", "--swag-epochs", "4"]
    assert main([*args, "--out", str(out)]) == 0
    table = pd.read_csv(out / "metrics.csv")
    assert set(table.method) == {"map", "swag", "multiswag", "hmc-gaussian"}
    data = load_digits()
    model_like = MLP(data.n_features, (16,), data.n_classes, key=jax.random.key(1))
    multi = Posterior.load(out / "posterior-multiswag.nc", model_like)
    assert multi.kind == "variational" and multi.attrs["n_members"] == 3
    assert set(multi.draw_chain.tolist()) == {0, 1, 2}


def test_compare_priors_scores_laplace_by_the_glm_predictive(tmp_path):
    """--laplace-predictive glm: whole-network kron and diag Laplace scored by the matrix-free
    linearised predictive (near MAP, where weight-space draws of kron collapse), saved as draws."""
    out = tmp_path / "run"
    methods = ["--methods", "map,laplace-kron,laplace-diag", "--laplace-predictive", "glm"]
    assert main([*TINY, *methods, "--out", str(out)]) == 0
    table = pd.read_csv(out / "metrics.csv")
    acc = table[(table.metric == "accuracy") & (table.severity == 0)].set_index("method").value
    assert (
        abs(acc["laplace-kron"] - acc["map"]) < 0.1 and abs(acc["laplace-diag"] - acc["map"]) < 0.1
    )
    data = load_digits()
    model_like = MLP(data.n_features, (16,), data.n_classes, key=jax.random.key(1))
    kron = Posterior.load(out / "posterior-laplace-kron.nc", model_like)
    assert kron.attrs["predictive"] == "glm" and kron.attrs["hessian"] == "kron"
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["laplace-kron"]["log_marginal_likelihood"] == kron.attrs["log_marginal_likelihood"]
    )
    assert summary["map"]["log_marginal_likelihood"] is None


def test_compare_priors_fits_the_baselines_under_empcov(tmp_path):
    """--baseline-prior empcov: MAP from an EmpCov draw in whitened coordinates, and SWAG and
    Laplace around it under the same prior."""
    out = tmp_path / "run"
    methods = ["--methods", "map,swag,laplace-kron", "--baseline-prior", "empcov"]
    args = [*TINY, *methods, "--swag-epochs", "4", "--laplace-predictive", "glm"]
    args += ["--map-epochs", "300", "--map-learning-rate", "1e-2"]  # from a prior draw
    assert main([*args, "--out", str(out)]) == 0
    table = pd.read_csv(out / "metrics.csv")
    acc = table[(table.metric == "accuracy") & (table.severity == 0)].set_index("method").value
    assert acc["map"] > 0.8 and abs(acc["laplace-kron"] - acc["map"]) < 0.1
    data = load_digits()
    model_like = MLP(data.n_features, (16,), data.n_classes, key=jax.random.key(1))
    fits = {m: Posterior.load(out / f"posterior-{m}.nc", model_like) for m in acc.index}
    for method in ("map", "swag"):
        assert fits[method].attrs["whitened_first_layer"], method
    assert all("EmpCov" in fit.attrs["prior"] for fit in fits.values())


def test_bad_flag_is_one_clear_line(tmp_path, capsys):
    code = main([*TINY, "--priors", "gaussian,horseshoe", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "unknown priors ['horseshoe']" in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_multi_line_messages_are_printed_on_one_line():
    assert one_line(ValueError("first line\n  second line")) == "first line second line"
    assert one_line(KeyError()) == "KeyError"


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(ValueError, match="unknown priors"):
        main([*TINY, "--priors", "horseshoe", "--out", str(tmp_path), "--debug"])


@pytest.mark.slow
def test_diagnose_prints_rhat_for_a_two_chain_run(tmp_path, capsys):
    out = tmp_path / "run"
    args = [*TINY, "--n-iterations", "8", "--n-chains", "2", "--no-map", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["diagnose", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "posterior-hmc-empcov.nc" in printed and "r_hat" in printed
    assert "test_accuracy" in printed
    assert main(["diagnose", str(tmp_path / "missing")]) == 1


def test_methods_names_exactly_what_is_fitted(tmp_path):
    from bnn_shift.experiments.compare_priors import settings_for_methods

    assert settings_for_methods(["map", "laplace-kron", "swag", "hmc"]) == {
        "include_map": True,
        "baselines": ("laplace-kron", "swag"),
        "sampler": "hmc",
    }
    assert settings_for_methods(["mclmc-empcov-product", "map"])["priors"] == ("empcov-product",)
    assert settings_for_methods(["swag"])["priors"] == ()
    with pytest.raises(ValueError, match="one sampler per comparison"):
        settings_for_methods(["hmc-gaussian", "mala-gaussian"])
    with pytest.raises(ValueError, match="unknown method 'hmc-flat'"):
        settings_for_methods(["hmc-flat"])
    out = tmp_path / "run"
    args = [*TINY, "--methods", "map,laplace-last-layer,hmc-gaussian", "--out", str(out)]
    assert main(args) == 0
    assert set(pd.read_csv(out / "metrics.csv").method) == {
        "map",
        "laplace-last-layer",
        "hmc-gaussian",
    }
    assert main([*TINY, "--methods", "hmc-gaussian", "--priors", "empcov"]) == 1
