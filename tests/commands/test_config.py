"""--config FILE (TOML) and the config.toml every run writes: a run repeats bit for bit."""

import importlib
import tomllib

import pytest

from bnn_shift.cli import main

TINY = [
    "compare-priors", "--dataset", "digits", "--n-train", "120", "--n-test", "60",
    "--hidden", "8", "--priors", "empcov", "--no-map", "--n-iterations", "3",
    "--n-burnin", "1", "--noise", "0,1", "--seed", "5", "--quiet",
]  # fmt: skip


@pytest.mark.slow
def test_written_config_repeats_the_run_bit_for_bit(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([*TINY, "--out", str(first)]) == 0
    config = tomllib.loads((first / "config.toml").read_text())
    assert config["command"] == "compare-priors"
    assert config["priors"] == ["empcov"] and config["hidden"] == [8] and config["seed"] == 5

    assert (
        main(["compare-priors", "--config", str(first / "config.toml"), "--out", str(second)]) == 0
    )
    assert (second / "metrics.csv").read_bytes() == (first / "metrics.csv").read_bytes()
    again = tomllib.loads((second / "config.toml").read_text())
    assert {k: v for k, v in again.items() if k != "out"} == {
        k: v for k, v in config.items() if k != "out"
    }


def test_flags_override_the_config_file(tmp_path):
    from bnn_shift.cli import _parse, build_parser

    path = tmp_path / "c.toml"
    path.write_text(
        'command = "compare-priors"\nseed = 3\nnoise_stds = [0.0, 2.0]\nn_train = "all"\n'
    )
    args = _parse(build_parser(), ["compare-priors", "--config", str(path), "--seed", "9"])
    assert args.seed == 9 and args.noise_stds == (0.0, 2.0) and args.n_train is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonsense = 1\n", "unknown settings ['nonsense']"),
        ('command = "diagnose"\n', "written by `bnn-shift diagnose`"),
        ("seed = \n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, capsys, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        main(["compare-priors", "--config", str(path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_binary_config_file_is_named(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(SystemExit) as exit_info:
        main(["compare-priors", "--config", str(path)])
    assert exit_info.value.code == 2
    assert f"--config {path} is not a text (UTF-8 TOML) file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("step_size = true\n", "step_size is True; give a number or a string"),
        ("n_iterations = 2.5\n", "n_iterations is 2.5; give an integer"),
        ("priors = 5\n", "priors is 5; give a list of strings"),
        ('include_map = "no"\n', "include_map is 'no'; give true or false"),
        ('noise_stds = ["a", 1]\n', "noise_stds is ('a', 1); give a list of numbers"),
        ("noise_stds = [-1.0]\n", "noise_stds is (-1.0,); it must be one or more stds >= 0"),
        ("seed = -1\n", "seed is -1; it must be >= 0"),
        (
            'laplace_predictive = "linear"\n',
            "laplace_predictive is 'linear'; it must be one of ('mc', 'glm', 'probit')",
        ),
        ("n_iterations = 5\nn_burnin = 5\n", "n_burnin is 5, not below n_iterations=5"),
    ],
)
def test_config_values_of_the_wrong_type_or_range_stop_before_any_work(
    tmp_path, capsys, monkeypatch, text, message
):
    """Checked when the settings are read, not after minutes of fitting."""
    run = importlib.import_module("bnn_shift.experiments.compare_priors")
    monkeypatch.setattr(run, "load_data", lambda config: pytest.fail("work started"))
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert main(["compare-priors", "--config", str(path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "message"), [(["--seed", "-1"], "seed is -1"), (["--noise=-1"], "noise_stds is")]
)
def test_negative_flags_name_the_setting(tmp_path, capsys, flags, message):
    assert main([*TINY, *flags, "--out", str(tmp_path)]) == 1
    assert message in capsys.readouterr().err
