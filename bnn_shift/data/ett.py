"""ETT-format time series (ETTh1/ETTh2, REFERENCE 6.1): CSV loader, the standard split,
train-statistics standardisation and forecasting windows.

Format: a header `date,<var>,...` (ETT: HUFL, HULL, MUFL, MULL, LUFL, LULL, OT), then one row
per time step with an ISO date and a number per variable. The split follows the Informer code
(Zhou et al. 2021; kept by Autoformer, PatchTST and the rest of the long-horizon literature):
12/4/4 months of 30 days, i.e. train rows [0, 8640), val [8640, 11520), test [11520, 14400)
for hourly data (×4 for the 15-minute ETTm files); the trailing rows are unused. The input
window of a split's first example reaches L rows back into the previous split, so the split
borders are where the *targets* start. Every variable is standardised with the mean and
(population) std of the train rows.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnn_shift.data.cache import file_digest
from bnn_shift.data.errors import ChecksumError, DataNotFoundError

ENV_ETT = "BNN_SHIFT_ETT"
DEFAULT_FILE = "ETTh1.csv"
ETT_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
TARGET = "OT"
SHA256 = {
    "ETTh1.csv": "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
    "ETTh2.csv": "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",
}
MONTH_HOURS = 30 * 24
SPLIT_MONTHS = (12, 4, 4)  # train, val, test
ROWS_PER_HOUR = {"hour": 1, "minute": 4}  # ETTh (hourly) and ETTm (15-minute) files
SPLITS = ("train", "val", "test")
FEATURES = ("M", "S", "MS")  # multivariate, univariate target, multivariate -> target


@dataclass(frozen=True, eq=False)
class SeriesData:
    """A multivariate series, standardised with train statistics, and its split borders.

    `values` (n, d) float32 are (raw - mean) / std; `borders` are the row indices
    (0, train_end, val_end, test_end) where each split's forecast targets start and end.
    """

    name: str
    dates: np.ndarray  # (n,) datetime64[s]
    values: np.ndarray  # (n, d) float32, standardised
    columns: tuple[str, ...]
    target: str
    mean: np.ndarray  # (d,) float64, of the train rows
    std: np.ndarray  # (d,) float64
    borders: tuple[int, int, int, int]
    source: str = ""

    def __post_init__(self) -> None:
        n, d = np.shape(self.values)
        if len(self.columns) != d or np.shape(self.mean) != (d,) or np.shape(self.std) != (d,):
            raise ValueError(f"columns, mean and std must all have the {d} variables of values")
        if self.target not in self.columns:
            raise ValueError(f"target {self.target!r} is not a column of {self.columns}")
        if len(self.dates) != n:
            raise ValueError(f"{len(self.dates)} dates for {n} rows")
        if list(self.borders) != sorted(self.borders) or self.borders[-1] > n:
            raise ValueError(f"borders {self.borders} must increase and stay within {n} rows")

    @property
    def n_variables(self) -> int:
        return len(self.columns)

    def split_rows(self, split: str, input_length: int = 0) -> tuple[int, int]:
        """[start, end) rows of `split` including the `input_length` rows of context before
        its first target (the convention of the standard ETT split)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        i = SPLITS.index(split)
        start, end = self.borders[i], self.borders[i + 1]
        return max(start - input_length, 0), end

    def _columns_for(self, features: str) -> tuple[list[int], list[int]]:
        if features not in FEATURES:
            raise ValueError(f"unknown features {features!r}; valid: {', '.join(FEATURES)}")
        every, target = list(range(self.n_variables)), [self.columns.index(self.target)]
        return (target if features == "S" else every), (every if features == "M" else target)

    def windows(
        self,
        split: str,
        input_length: int,
        horizon: int,
        *,
        features: str = "M",
        stride: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Forecasting examples of `split`: x (n, L, d_in) the past L steps, y (n, H, d_out)
        the next H. features "M": all variables in and out; "S": the target only; "MS": all
        in, target out. Windows start every `stride` rows, in order."""
        if input_length < 1 or horizon < 1 or stride < 1:
            raise ValueError(
                f"need input_length, horizon and stride >= 1; got {input_length}, {horizon}, "
                f"{stride}"
            )
        start, end = self.split_rows(split, input_length)
        n = end - start - input_length - horizon + 1
        if n < 1:
            raise ValueError(
                f"the {split} split has {end - start} rows (context included), too few for "
                f"input_length={input_length} + horizon={horizon}"
            )
        cols_in, cols_out = self._columns_for(features)
        first = start + np.arange(0, n, stride)  # (n_windows,)
        x_index = first[:, None] + np.arange(input_length)[None, :]  # (n_windows, L)
        y_index = first[:, None] + input_length + np.arange(horizon)[None, :]  # (n_windows, H)
        return self.values[x_index][..., cols_in], self.values[y_index][..., cols_out]

    def inverse_transform(self, values: np.ndarray, columns: str = "all") -> np.ndarray:
        """Standardised (..., d) back to raw units; `columns="target"` for (..., 1) target
        values (features "S" / "MS" outputs)."""
        values = np.asarray(values, np.float64)
        if columns == "target":
            i = self.columns.index(self.target)
            mean, std = self.mean[i : i + 1], self.std[i : i + 1]
        elif columns == "all":
            mean, std = self.mean, self.std
        else:
            raise ValueError(f"columns must be 'all' or 'target', got {columns!r}")
        if values.shape[-1] != len(mean):
            raise ValueError(f"last axis has {values.shape[-1]} variables, expected {len(mean)}")
        return values * std + mean


def ett_borders(n_rows: int, split: str | tuple[float, float] = "hour") -> tuple[int, ...]:
    """(0, train_end, val_end, test_end): "hour"/"minute" give the 12/4/4-month ETT split;
    a (train_fraction, test_fraction) pair gives the by-ratio split of other datasets
    (train first, test last, val between, as the Autoformer code splits custom CSVs)."""
    if isinstance(split, str):
        if split not in ROWS_PER_HOUR:
            raise ValueError(
                f"unknown split {split!r}; use 'hour', 'minute' or (train_fraction, test_fraction)"
            )
        month = MONTH_HOURS * ROWS_PER_HOUR[split]
        ends = np.cumsum(SPLIT_MONTHS) * month
        if ends[-1] > n_rows:
            raise ValueError(
                f"the {split!r} ETT split needs {ends[-1]} rows (12/4/4 months), the file has "
                f"{n_rows}; pass split=(train_fraction, test_fraction), e.g. (0.7, 0.2)"
            )
        return (0, *(int(e) for e in ends))
    train_fraction, test_fraction = split
    if not (train_fraction > 0 and test_fraction > 0 and train_fraction + test_fraction < 1):
        raise ValueError(f"split fractions must be positive with train + test < 1; got {split}")
    n_train = int(n_rows * train_fraction)
    n_test = int(n_rows * test_fraction)
    return (0, n_train, n_rows - n_test, n_rows)


def read_ett_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """An ETT-format CSV -> dates (n,) datetime64[s], raw values (n, d) float64, column names.
    Errors name the file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"{path} is not a file; pass the path of an ETT-format CSV (e.g. ETTh1.csv from "
            "github.com/zhouhaoyi/ETDataset)"
        )
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if not header or header[0].strip().lower() != "date" or len(header) < 2:
            raise ValueError(
                f"{path}: the header must be 'date,<variable>,...' (got {header}); ETT files "
                f"have date,{','.join(ETT_COLUMNS)}"
            )
        columns = tuple(h.strip() for h in header[1:])
        if len(set(columns)) != len(columns) or not all(columns):
            raise ValueError(f"{path}: column names must be distinct and non-empty: {columns}")
        dates, values = [], []
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path} line {line}: {len(row)} fields, the header has {len(header)}"
                )
            dates.append(_parse_date(row[0], path, line))
            values.append([_parse_value(v, path, line, c) for v, c in zip(row[1:], columns)])
    if len(dates) < 2:
        raise ValueError(f"{path} has {len(dates)} data rows; a series needs at least 2")
    stamps = np.array(dates, dtype="datetime64[s]")
    bad = np.flatnonzero(np.diff(stamps) <= np.timedelta64(0, "s"))
    if bad.size:
        i = int(bad[0]) + 1
        raise ValueError(
            f"{path} line {i + 2}: date {stamps[i]} does not come after {stamps[i - 1]}; "
            "rows must be in strictly increasing time order"
        )
    return stamps, np.array(values, np.float64), columns


def _parse_date(text: str, path: Path, line: int) -> np.datetime64:
    try:
        return np.datetime64(text.strip().replace(" ", "T"), "s")
    except ValueError:
        raise ValueError(
            f"{path} line {line}, column 'date': {text!r} is not a date like '2016-07-01 00:00:00'"
        ) from None


def _parse_value(text: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"{path} line {line}, column {column!r}: {text!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"{path} line {line}, column {column!r}: value {text!r} is not finite")
    return value


def _verify_known(path: Path) -> None:
    expected = SHA256.get(path.name)
    if expected is None:
        return
    got = file_digest(path)
    if got != expected:
        raise ChecksumError(
            f"{path} is named like the ETT release file but its sha256 is {got}, expected "
            f"{expected}; re-download it or rename it if it is a different series"
        )


def shared_ett_path(filename: str = DEFAULT_FILE) -> Path:
    """Where a checkout with a sibling `shared/` keeps the ETT files."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / filename


def resolve_ett_path(path: str | Path | None = None) -> Path:
    """The CSV to read: `path`, else $BNN_SHIFT_ETT, else the shared ETTh1.csv."""
    if path is not None:
        return Path(path).expanduser()
    if os.environ.get(ENV_ETT):
        return Path(os.environ[ENV_ETT]).expanduser()
    shared = shared_ett_path()
    if not shared.is_file():
        raise DataNotFoundError(
            f"no ETT file given and no shared copy at {shared}. Pass --path FILE on the "
            f"command line (path=FILE to load_ett) or set {ENV_ETT}=FILE; ETTh1.csv is in "
            "github.com/zhouhaoyi/ETDataset (sha256 " + SHA256[DEFAULT_FILE] + ")"
        )
    return shared


def load_ett(
    path: str | Path | None = None,
    *,
    target: str = TARGET,
    split: str | tuple[float, float] = "hour",
    name: str | None = None,
) -> SeriesData:
    """Load an ETT-format CSV (`path`, else $BNN_SHIFT_ETT, else the shared ETTh1.csv), split
    it (default: the hourly 12/4/4-month ETT split) and standardise every variable with the
    train rows' mean and std. ETTh1.csv / ETTh2.csv are checked against their recorded sha256."""
    path = resolve_ett_path(path)
    if path.is_file():
        _verify_known(path)  # before parsing: a damaged release file gets the clearer error
    dates, raw, columns = read_ett_csv(path)
    if target not in columns:
        raise ValueError(f"{path}: target column {target!r} is not among {columns}")
    borders = ett_borders(len(raw), split)
    train = raw[borders[0] : borders[1]]  # (n_train, d)
    mean, std = train.mean(axis=0), train.std(axis=0)
    flat = [c for c, s in zip(columns, std) if not s > 0]
    if flat:
        raise ValueError(f"{path}: columns {flat} are constant over the train rows")
    return SeriesData(
        name=name or path.stem,
        dates=dates,
        values=((raw - mean) / std).astype(np.float32),
        columns=columns,
        target=target,
        mean=mean,
        std=std,
        borders=tuple(int(b) for b in borders),
        source=str(path),
    )
