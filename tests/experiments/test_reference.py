"""Reference posteriors: independent resumable runs, a checksummed file, scoring against it."""

import warnings

import numpy as np
import pytest

from bnn_shift.cli import main
from bnn_shift.experiments.compare_priors import ComparePriorsConfig, load_data
from bnn_shift.experiments.reference import (
    CLEAN,
    ReferenceConfig,
    against_reference,
    build_reference,
    eval_sets,
    input_digests,
    load_reference,
    noise_name,
)
from bnn_shift.shift.agreement import closeness

PROBLEM = ComparePriorsConfig(dataset="digits", n_train=300, n_test=100, hidden=(16,))
CONFIG = ReferenceConfig(n_iterations=6, n_burnin=2, step_size=5e-3, problem=PROBLEM)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 6 iterations have not converged, and say so
        reference = build_reference(CONFIG, root / "runs", progress=False)
    return reference, reference.save(root / "ref.npz"), root


def test_runs_are_independent_and_cover_clean_and_noisy_sets(built):
    reference, _, _ = built
    assert set(reference.runs) == {CLEAN, noise_name(2.0)}
    first, second = reference.runs[CLEAN]
    assert first.shape == (100, 10) and not np.array_equal(first, second)
    data = load_data(PROBLEM)
    assert reference.digests == input_digests(eval_sets(CONFIG, data.x_test, data.y_test))
    assert [run["seed"] for run in reference.meta["runs"]] == list(CONFIG.seeds)


def test_saved_reference_round_trips_and_its_floor_is_run_versus_run(built):
    reference, path, _ = built
    loaded = load_reference(path)
    for name, runs in reference.runs.items():
        np.testing.assert_array_equal(loaded.predictions[name], np.mean(runs, axis=0))
        assert loaded.floor()[name] == closeness(runs[0], runs[1])
    assert loaded.meta["floor"] == reference.floor()


def test_a_changed_reference_file_is_refused(built, tmp_path):
    _, path, _ = built
    copy = tmp_path / "ref.npz"
    copy.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    copy.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(ValueError, match="changed or truncated"):
        load_reference(copy)
    with pytest.raises(FileNotFoundError, match="sidecar"):
        load_reference(tmp_path / "missing.npz")


def test_rerunning_resumes_instead_of_recomputing(built):
    reference, _, root = built
    again = build_reference(CONFIG, root / "runs", progress=False)
    for name, runs in reference.runs.items():
        np.testing.assert_array_equal(again.runs[name], runs)


def test_scores_against_the_pooled_reference_and_checks_the_inputs(built):
    reference, _, _ = built
    mine = {CLEAN: reference.runs[CLEAN][0]}
    rows = against_reference(mine, reference.digests, reference)
    assert (
        rows[CLEAN]["agreement"]
        == closeness(mine[CLEAN], reference.predictions[CLEAN])["agreement"]
    )
    assert rows[CLEAN]["floor_total_variation"] == reference.floor()[CLEAN]["total_variation"]
    with pytest.raises(ValueError, match="other inputs"):
        against_reference(mine, {CLEAN: "0" * 64}, reference)
    with pytest.raises(ValueError, match="no eval set in common"):
        against_reference({"other": mine[CLEAN]}, {}, reference)


@pytest.mark.slow
def test_diagnose_scores_a_compare_priors_run_against_the_reference(built, tmp_path, capsys):
    _, path, _ = built
    out = tmp_path / "run"
    args = ["compare-priors", "--dataset", "digits", "--n-train", "300", "--n-test", "100"]
    args += ["--hidden", "16", "--n-iterations", "6", "--n-burnin", "2", "--n-chains", "2"]
    assert main([*args, "--priors", "gaussian", "--no-map", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(out), "--reference", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "vs reference on test: agreement" in printed and "floor" in printed
    assert "per-point R-hat on test" in printed
