"""--config FILE (TOML) and the config.toml every run writes: a run repeats bit for bit."""

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
