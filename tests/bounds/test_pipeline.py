import json
import math

import jax
import numpy as np
import pytest

from bnn_shift.bounds.bound import catoni_bound, kl_nats, occam_bound
from bnn_shift.bounds.pipeline import BoundSettings, bound_model, reports_table
from bnn_shift.cli import _parse, build_parser, main
from bnn_shift.data import load_digits
from bnn_shift.models import MLP


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_cli_bound_end_to_end_on_digits(tmp_path, digits, capsys):
    # A tiny full run: subspace fit, k-means levels, QAT, arithmetic code, bound, JSON report.
    out = tmp_path / "run"
    argv = ["bound", "--dataset", "digits", "--hidden", "16", "--intrinsic-dim", "60"]
    argv += ["--epochs", "6", "--quant-epochs", "1", "--learning-rate", "0.2", "--levels", "5"]
    argv += ["--batch-size", "32", "--prior", "none", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Catoni" in printed and "code length" in printed and "KL" in printed
    report = json.loads((out / "report.json").read_text())["reports"]["none"]
    n, kl, err = report["n"], report["kl"], report["train_error"]
    assert n == len(digits.y_train) and report["intrinsic_dim"] == 60
    code = report["code"]
    assert code["n_symbols"] == 60 and abs(code["payload_bits"] - code["entropy_bits"]) <= 2
    assert code["message_bits"] == code["payload_bits"] + 5 * 16 + 5 * math.ceil(math.log2(61))
    assert kl == pytest.approx(kl_nats(code["prefix_free_bits"], 10.0))
    assert report["catoni"] == pytest.approx(catoni_bound(err, kl, n))
    assert report["occam"] == pytest.approx(occam_bound(err, kl, n))
    assert err <= report["catoni"] <= 1.0
    assert err < 0.6  # 6 epochs in 60 dimensions learn something (chance is 0.9)
    # the recorded config.toml parses back into the same settings (`--config` repeats the run)
    again = _parse(build_parser(), ["bound", "--config", str(out / "config.toml")])
    assert again.intrinsic_dim == 60 and again.priors == ("none",) and again.n_levels == 5
    saved = np.load(out / "hypothesis-none.npz")
    assert saved["symbols"].shape == (60,) and saved["levels"].shape == (5,)


def test_data_dependent_prior_bounds_the_complement_only(digits):
    # d = 0: the hypothesis is θ₀ = a fit on the prior split itself, bounded on the rest with
    # KL = hyperparameter bits only.
    seen = {}

    def fit(model, x, y):
        seen["n"] = len(x)
        return model

    model = MLP(64, (8,), 10, key=jax.random.key(0))
    settings = BoundSettings(intrinsic_dim=0, prior_fraction=0.25, hyper_bits=2.0)
    r = bound_model(model, digits.x_train, digits.y_train, settings, fit_prior=fit, progress=False)
    n_all = len(digits.y_train)
    assert seen["n"] == round(0.25 * n_all) and r.n == n_all - seen["n"]
    assert r.code.message_bits == 0 and r.kl == pytest.approx(2 * math.log(2))
    assert r.catoni == pytest.approx(catoni_bound(r.train_error, r.kl, r.n))
    table = reports_table({"untrained": r})
    assert table.loc["untrained", "d"] == 0
    with pytest.raises(ValueError, match="prior_fraction"):
        bound_model(model, digits.x_train, digits.y_train, BoundSettings(), fit_prior=fit)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="never subtract"):
        BoundSettings(hyper_bits=-2)
    with pytest.raises(ValueError, match="projector"):
        BoundSettings(projector="fastfood")
    with pytest.raises(ValueError, match="codebook_dtype"):
        BoundSettings(codebook_dtype="int8")
    assert np.isclose(BoundSettings().delta, 0.05)


def test_an_interrupted_bound_run_resumes_to_the_same_hypothesis(tmp_path, digits, monkeypatch):
    """Ctrl-C after the subspace fit's second epoch, then the same call again: it resumes from
    the checkpoint and ends with the hypothesis of an uninterrupted run, bit for bit."""
    from bnn_shift.bounds import train

    model = MLP(64, (8,), 10, key=jax.random.key(0))
    settings = BoundSettings(intrinsic_dim=40, n_levels=5, epochs=4, quant_epochs=2,
                             batch_size=64, learning_rate=0.1)  # fmt: skip
    args = (model, digits.x_train, digits.y_train, settings)
    whole = bound_model(*args, progress=False)

    saves = []
    real_save = train.save_run_state

    def save_then_interrupt(run_dir, state, arrays, completed, fingerprint):
        real_save(run_dir, state, arrays, completed, fingerprint)
        saves.append(completed)
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_run_state", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        bound_model(*args, progress=False, run_dir=tmp_path / "run")
    monkeypatch.setattr(train, "save_run_state", real_save)
    resumed = bound_model(*args, progress=False, run_dir=tmp_path / "run")
    for name in ("symbols", "levels", "w"):
        np.testing.assert_array_equal(resumed.arrays[name], whole.arrays[name])
    assert resumed.catoni == whole.catoni
    other = BoundSettings(**{**settings.__dict__, "learning_rate": 0.05})
    with pytest.raises(ValueError, match=r"different run.*learning_rate"):
        bound_model(model, digits.x_train, digits.y_train, other, run_dir=tmp_path / "run")
