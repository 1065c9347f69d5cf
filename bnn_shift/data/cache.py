"""Cache directory, checksums, atomic writes and safe archive extraction."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import platformdirs

from bnn_shift.data.errors import ChecksumError, UnsafeArchiveError

ENV_DATA_HOME = "BNN_SHIFT_DATA"
_CHUNK = 1 << 20


def data_home() -> Path:
    """Root of the dataset cache: $BNN_SHIFT_DATA, else the per-user cache dir of bnn-shift."""
    env = os.environ.get(ENV_DATA_HOME)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("bnn-shift"))


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes."""
    h = hashlib.new(algorithm)
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def array_digest(array: np.ndarray) -> str:
    """sha256 of an array's C-order bytes (the shape is checked separately)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def verify_array(
    array: np.ndarray, *, shape: tuple[int, ...], dtype: str, sha256: str, what: str
) -> None:
    """Raise ChecksumError unless `array` has this shape, dtype and content hash."""
    if array.shape != shape or array.dtype != np.dtype(dtype):
        raise ChecksumError(
            f"{what}: decoded array is {array.dtype}{array.shape}, expected {dtype}{shape}"
        )
    got = array_digest(array)
    if got != sha256:
        raise ChecksumError(f"{what}: decoded array sha256 is {got}, expected {sha256}")


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temp file beside `path`; on clean exit it replaces `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy `src` to `dst` atomically (readers never see a partial `dst`)."""
    with Path(src).open("rb") as fin, atomic_write(dst) as fout:
        shutil.copyfileobj(fin, fout, _CHUNK)
    return Path(dst)


def safe_extract(
    tar: tarfile.TarFile, dest: str | Path, names: Iterable[str] | None = None
) -> list[Path]:
    """Extract regular files `names` (default: all) from `tar` under `dest`; return their paths.

    Rejects, before writing anything, members that are links or devices, are missing, or would
    resolve outside `dest`; extraction itself also runs tarfile's "data" filter.
    """
    root = Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if names is None:
        members = [m for m in tar.getmembers() if not m.isdir()]
    else:
        members = []
        for name in names:
            try:
                members.append(tar.getmember(name))
            except KeyError:
                raise UnsafeArchiveError(f"archive has no member {name!r}") from None
    for m in members:
        target = (root / m.name).resolve()
        if not target.is_relative_to(root) or target == root:
            raise UnsafeArchiveError(f"archive member {m.name!r} resolves outside {root}")
        if not m.isfile():
            raise UnsafeArchiveError(f"archive member {m.name!r} is not a regular file")
    out = []
    for m in members:
        try:
            tar.extract(m, root, filter="data")
        except tarfile.FilterError as e:
            raise UnsafeArchiveError(f"archive member {m.name!r} rejected: {e}") from e
        out.append(root / m.name)
    return out
