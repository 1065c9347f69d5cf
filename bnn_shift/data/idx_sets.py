"""Four-file IDX image sets (MNIST, Fashion-MNIST): find, read, verify and normalise them.

Both sets use the same file stems (train-images-idx3-ubyte, ...; each raw or .gz) and the same
search order: a user directory, an environment variable, the cache, then a fetch into the cache.
Every decoded array is checked against its recorded shape and sha256.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnn_shift.data.cache import data_home, verify_array
from bnn_shift.data.dataset import Dataset
from bnn_shift.data.errors import ChecksumError, DataNotFoundError, IdxFormatError
from bnn_shift.data.idx import read_idx

log = logging.getLogger(__name__)

# key -> standard file name without .gz
STEMS: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

Fetcher = Callable[[Path, list[str], bool], None]  # (cache, missing keys, progress)


@dataclass(frozen=True)
class IdxSet:
    """One four-file set of gray images: its names, where a user may put it, its normalisation."""

    name: str  # the Dataset's name and the cache folder data_home()/name
    title: str  # the set as error messages name it
    env_var: str  # environment variable naming a directory that holds the files
    how_to: str  # the ways to provide the set, appended to not-found errors
    mean: float  # of the training pixels / 255
    std: float
    classes: tuple[str, ...]


@dataclass(frozen=True)
class IdxFile:
    """One IDX file of a set: its stem, decoded shape and checksums."""

    stem: str  # standard file name without .gz
    shape: tuple[int, ...]
    sha256: str  # of the decoded uint8 array's C-order bytes
    gz_sha256: str = ""  # of a canonical .gz download, where one exists


def candidates(directory: Path, stem: str) -> list[Path]:
    """The existing files `stem` and `stem.gz` in `directory`, raw first."""
    return [p for p in (directory / stem, directory / f"{stem}.gz") if p.is_file()]


def read_verified(path: Path, spec: IdxFile) -> np.ndarray:
    """Decode the IDX file at `path` and check it against `spec` (ChecksumError if not)."""
    arr = read_idx(path)
    verify_array(arr, shape=spec.shape, dtype="uint8", sha256=spec.sha256, what=str(path))
    return arr


def read_dir(
    directory: Path, files: Mapping[str, IdxFile], *, title: str, origin: str, how_to: str
) -> dict[str, np.ndarray]:
    """Read a user-given directory; anything missing or failing its checksum is an error."""
    if not directory.is_dir():
        raise DataNotFoundError(f"{origin} {directory} is not a directory.\n{how_to}")
    found = {k: candidates(directory, f.stem) for k, f in files.items()}
    missing = [files[k].stem for k, paths in found.items() if not paths]
    if missing:
        raise DataNotFoundError(f"{origin} {directory} lacks {title} files {missing}.\n{how_to}")
    out = {}
    for key, paths in found.items():
        try:
            out[key] = read_verified(paths[0], files[key])
        except IdxFormatError as e:
            raise ChecksumError(f"{title} file {paths[0]} is not valid IDX: {e}") from e
        except ChecksumError as e:
            raise ChecksumError(f"{title} file {paths[0]} fails its checksum: {e}") from e
    return out


def read_cache(
    cache: Path,
    files: Mapping[str, IdxFile],
    keys: list[str],
    *,
    title: str,
    fresh: bool = False,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Read `keys` from the cache, deleting files that fail their checksum; returns the arrays
    and the keys still missing. With `fresh` (just fetched) a bad or missing file raises."""
    arrays, missing = {}, []
    for key in keys:
        spec = files[key]
        for path in candidates(cache, spec.stem):
            try:
                arrays[key] = read_verified(path, spec)
                break
            except (IdxFormatError, ChecksumError) as e:
                path.unlink(missing_ok=True)
                if fresh:
                    raise ChecksumError(f"freshly fetched {path} is bad (deleted): {e}") from e
                log.warning("deleted bad %s cache file %s (%s); re-fetching it", title, path, e)
        else:
            if fresh:
                raise DataNotFoundError(f"fetch did not produce {spec.stem} in {cache}")
            missing.append(key)
    return arrays, missing


def load_uint8(
    data_dir: str | Path | None,
    spec: IdxSet,
    files: Mapping[str, IdxFile],
    fetch: Fetcher,
    *,
    download: bool,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Search `data_dir`, then $`spec.env_var`, then the cache data_home()/`spec.name`; with
    `download`, `fetch` the missing files into the cache. Returns the verified uint8 arrays
    keyed like `files`."""
    title, env_var, how_to = spec.title, spec.env_var, spec.how_to
    cache = data_home() / spec.name
    if data_dir is not None:
        return read_dir(Path(data_dir), files, title=title, origin="data_dir", how_to=how_to)
    env = os.environ.get(env_var)
    if env:
        return read_dir(
            Path(env).expanduser(), files, title=title, origin=f"${env_var}", how_to=how_to
        )
    arrays, missing = read_cache(cache, files, list(files), title=title)
    if not missing:
        return arrays
    if not download:
        raise DataNotFoundError(
            f"{title} files {[files[k].stem for k in missing]} are not in the cache {cache} "
            f"and download=False.\n{how_to}"
        )
    fetch(cache, missing, progress)
    fetched, _ = read_cache(cache, files, missing, title=title, fresh=True)
    return arrays | fetched


def gray_images(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(n, H, W) uint8 -> (n, H, W, 1) float32, normalised as (pixel/255 - mean) / std."""
    return ((images.astype(np.float32) / 255.0 - mean) / std)[..., None]


def gray_dataset(raw: Mapping[str, np.ndarray], spec: IdxSet) -> Dataset:
    """The four verified uint8 arrays as a Dataset: images (n, H, W, 1) float32 normalised as
    (pixel/255 - spec.mean) / spec.std, labels int32, one class per name in `spec.classes`."""
    return Dataset(
        name=spec.name,
        x_train=gray_images(raw["train_images"], spec.mean, spec.std),
        y_train=raw["train_labels"].astype(np.int32),
        x_test=gray_images(raw["test_images"], spec.mean, spec.std),
        y_test=raw["test_labels"].astype(np.int32),
        n_classes=len(spec.classes),
        mean=spec.mean,
        std=spec.std,
        classes=spec.classes,
    )
