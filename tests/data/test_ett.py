"""Tests for bnn_shift.data.ett: ETT-format CSVs, the 12/4/4-month split, windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bnn_shift.data import ChecksumError, DataNotFoundError, SeriesData, load_ett
from bnn_shift.data import ett as ett_module
from bnn_shift.data.ett import ENV_ETT, ETT_COLUMNS, ett_borders, read_ett_csv

HEADER = "date," + ",".join(ETT_COLUMNS)


@pytest.fixture(scope="module")
def etth1_file(shared_data_dir: Path) -> Path:
    path = shared_data_dir / "ETTh1.csv"
    if not path.is_file():
        pytest.skip(f"no ETTh1.csv in {shared_data_dir}")
    return path


@pytest.fixture(scope="module")
def etth1(etth1_file: Path) -> SeriesData:
    return load_ett(etth1_file)


def write_csv(path: Path, n: int, *, header: str = HEADER, seed: int = 0) -> Path:
    """n hourly rows from 2020-01-01 of random values in the 7 ETT columns."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2020-01-01T00:00:00")
    lines = [header]
    for i in range(n):
        stamp = str(start + np.timedelta64(i, "h")).replace("T", " ")
        lines.append(stamp + "," + ",".join(f"{v:.6f}" for v in rng.normal(size=7) * 3 + 10))
    path.write_text("\n".join(lines) + "\n")
    return path


def edit_line(path: Path, line: int, new: str) -> Path:
    lines = path.read_text().splitlines()
    lines[line - 1] = new
    path.write_text("\n".join(lines) + "\n")
    return path


def test_etth1_layout_and_split(etth1):
    # REFERENCE 6.1: 17,420 hourly rows, 2016-07-01 00:00 ... 2018-06-26 19:00
    assert etth1.values.shape == (17_420, 7) and etth1.values.dtype == np.float32
    assert etth1.columns == ETT_COLUMNS and etth1.target == "OT"
    assert etth1.dates[0] == np.datetime64("2016-07-01T00:00:00")
    assert etth1.dates[-1] == np.datetime64("2018-06-26T19:00:00")
    assert etth1.borders == (0, 8_640, 11_520, 14_400)  # 12/4/4 months of 30 days
    assert etth1.name == "ETTh1"


def test_standardised_with_train_statistics(etth1, etth1_file):
    train = etth1.values[:8640].astype(np.float64)
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.std(0), 1.0, rtol=1e-5)
    # later rows use the same (train) statistics, so they are not standardised themselves
    assert np.abs(etth1.values[11520:14400].mean(0)).max() > 0.1
    # first row of the file: 5.827000141143799, ..., OT 30.5310001373291
    raw = etth1.inverse_transform(etth1.values[0])
    assert raw[0] == pytest.approx(5.827000141143799, rel=1e-6)
    assert raw[-1] == pytest.approx(30.5310001373291, rel=1e-6)
    ot = etth1.inverse_transform(etth1.values[:1, -1:], columns="target")
    assert ot[0, 0] == pytest.approx(30.5310001373291, rel=1e-6)


@pytest.mark.parametrize(
    ("length", "counts"), [(96, (8449, 2785, 2785)), (336, (8209, 2785, 2785))]
)
def test_window_counts_match_the_standard_split(etth1, length, counts):
    # Informer-style counts for horizon 96: border span - L - H + 1
    for split, count in zip(("train", "val", "test"), counts, strict=True):
        x, y = etth1.windows(split, length, 96)
        assert x.shape == (count, length, 7) and y.shape == (count, 96, 7)


def test_windows_line_up_with_the_borders(etth1):
    L, H = 96, 192
    x, y = etth1.windows("val", L, H)
    # the first val target starts at row 8640, its input reaches L rows into train
    np.testing.assert_array_equal(x[0], etth1.values[8640 - L : 8640])
    np.testing.assert_array_equal(y[0], etth1.values[8640 : 8640 + H])
    x, y = etth1.windows("test", L, H)
    np.testing.assert_array_equal(y[-1], etth1.values[14400 - H : 14400])  # last target row
    # consecutive windows shift by one row
    np.testing.assert_array_equal(x[1, :-1], x[0, 1:])
    assert etth1.split_rows("test", L) == (11520 - L, 14400)


def test_univariate_and_ms_features(etth1):
    xs, ys = etth1.windows("train", 48, 24, features="S")
    xm, ym = etth1.windows("train", 48, 24, features="MS")
    assert xs.shape[-1] == 1 and ys.shape[-1] == 1 and xm.shape[-1] == 7 and ym.shape[-1] == 1
    np.testing.assert_array_equal(xs[..., 0], xm[..., 6])  # OT is the last column
    np.testing.assert_array_equal(ys, ym)
    strided = etth1.windows("train", 48, 24, stride=24)[0]
    np.testing.assert_array_equal(strided, xm[::24])


def test_etth2_loads_and_is_checked(shared_data_dir):
    path = shared_data_dir / "ETTh2.csv"
    if not path.is_file():
        pytest.skip(f"no ETTh2.csv in {shared_data_dir}")
    data = load_ett(path)
    assert data.values.shape == (17_420, 7) and data.borders[-1] == 14_400


def test_a_file_named_etth1_must_match_its_checksum(etth1_file, tmp_path):
    head = etth1_file.read_text().splitlines()[:15_000]
    fake = tmp_path / "ETTh1.csv"
    fake.write_text("\n".join(head) + "\n")
    with pytest.raises(ChecksumError, match="sha256"):
        load_ett(fake)
    renamed = tmp_path / "etth1_head.csv"
    renamed.write_text("\n".join(head) + "\n")
    assert load_ett(renamed).values.shape == (14_999, 7)


def test_default_path_env_and_missing(tmp_path, monkeypatch):
    csv = write_csv(tmp_path / "series.csv", 60)
    monkeypatch.setenv(ENV_ETT, str(csv))
    assert load_ett(split=(0.6, 0.2)).source == str(csv)
    monkeypatch.delenv(ENV_ETT)
    monkeypatch.setattr(ett_module, "shared_ett_path", lambda: tmp_path / "absent.csv")
    with pytest.raises(DataNotFoundError, match="--path"):
        load_ett()
    with pytest.raises(DataNotFoundError, match=r"nope\.csv is not a file"):
        load_ett(tmp_path / "nope.csv")


def test_ratio_split_for_other_csvs(tmp_path):
    path = write_csv(tmp_path / "short.csv", 100)
    assert ett_borders(100, (0.7, 0.2)) == (0, 70, 80, 100)
    data = load_ett(path, split=(0.7, 0.2))
    assert data.borders == (0, 70, 80, 100)
    x, y = data.windows("test", 5, 3)
    assert x.shape == (20 - 3 + 1, 5, 7)
    np.testing.assert_array_equal(y[0], data.values[80:83])
    with pytest.raises(ValueError, match="needs 14400 rows"):
        load_ett(path)  # the default hourly ETT split


def test_minute_split_is_four_times_longer():
    assert ett_borders(69_680, "minute") == (0, 34_560, 46_080, 57_600)


def test_any_target_column(tmp_path):
    path = write_csv(tmp_path / "s.csv", 50)
    data = load_ett(path, split=(0.6, 0.2), target="HULL")
    xs, ys = data.windows("train", 4, 2, features="S")
    xm, ym = data.windows("train", 4, 2)
    np.testing.assert_array_equal(xs[..., 0], xm[..., 1])
    np.testing.assert_array_equal(ys[..., 0], ym[..., 1])
    with pytest.raises(ValueError, match="target column 'load'"):
        load_ett(path, split=(0.6, 0.2), target="load")


@pytest.mark.parametrize(
    ("line", "content", "match"),
    [
        (1, "time," + ",".join(ETT_COLUMNS), "header must be 'date"),
        (4, "2020-01-01 02:00:00,1,abc,3,4,5,6,7", r"line 4, column 'HULL': 'abc' is not a number"),
        (5, "2020-01-01 03:00:00,1,2,3,4,5,6", "line 5: 7 fields, the header has 8"),
        (6, "yesterday,1,2,3,4,5,6,7", "line 6, column 'date'"),
        (7, "2020-01-01 00:30:00,1,2,3,4,5,6,7", "line 7: date .* does not come after"),
        (8, "2020-01-01 06:00:00,1,2,3,4,5,6,nan", "line 8, column 'OT': value 'nan'"),
    ],
    ids=["header", "not-a-number", "short-row", "bad-date", "out-of-order", "nan"],
)
def test_bad_csv_errors_name_the_line_and_column(tmp_path, line, content, match):
    path = edit_line(write_csv(tmp_path / "bad.csv", 30), line, content)
    with pytest.raises(ValueError, match=match):
        read_ett_csv(path)


def test_constant_train_column_raises(tmp_path):
    path = write_csv(tmp_path / "c.csv", 30)
    lines = path.read_text().splitlines()
    fixed = [lines[0]] + [
        ",".join([*row.split(",")[:2], "1.0", *row.split(",")[3:]]) for row in lines[1:]
    ]
    path.write_text("\n".join(fixed) + "\n")
    with pytest.raises(ValueError, match=r"columns \['HULL'\] are constant"):
        load_ett(path, split=(0.6, 0.2))


def test_bad_window_requests_raise(tmp_path):
    data = load_ett(write_csv(tmp_path / "w.csv", 40), split=(0.5, 0.25))
    with pytest.raises(ValueError, match="too few for input_length=30"):
        data.windows("val", 30, 20)
    with pytest.raises(ValueError, match="unknown split"):
        data.windows("holdout", 2, 2)
    with pytest.raises(ValueError, match="unknown features"):
        data.windows("train", 2, 2, features="U")
    with pytest.raises(ValueError, match=">= 1"):
        data.windows("train", 0, 2)
    with pytest.raises(ValueError, match="fractions"):
        ett_borders(40, (0.8, 0.3))
