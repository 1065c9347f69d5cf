"""Cache location, atomic writes, checksums and safe tar extraction."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from bnn_shift.data import ChecksumError, UnsafeArchiveError, data_home
from bnn_shift.data.cache import array_digest, atomic_write, safe_extract, verify_array


def test_data_home_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BNN_SHIFT_DATA", str(tmp_path / "x"))
    assert data_home() == tmp_path / "x"
    monkeypatch.delenv("BNN_SHIFT_DATA")
    assert "bnn-shift" in str(data_home())


def test_atomic_write_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.bin"
    target.parent.mkdir()
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert list(target.parent.iterdir()) == [target]
    with atomic_write(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
    assert list(target.parent.iterdir()) == [target]


def test_verify_array() -> None:
    a = np.arange(10, dtype=np.uint8)
    verify_array(a, shape=(10,), dtype="uint8", sha256=array_digest(a), what="a")
    with pytest.raises(ChecksumError, match="expected uint8\\(5, 2\\)"):
        verify_array(a, shape=(5, 2), dtype="uint8", sha256=array_digest(a), what="a")
    b = a.copy()
    b[3] = 0
    with pytest.raises(ChecksumError, match="sha256"):
        verify_array(b, shape=(10,), dtype="uint8", sha256=array_digest(a), what="b")


def _tar(members: dict[str, bytes], symlink: tuple[str, str] | None = None) -> tarfile.TarFile:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink is not None:
            info = tarfile.TarInfo(symlink[0])
            info.type = tarfile.SYMTYPE
            info.linkname = symlink[1]
            tar.addfile(info)
    buf.seek(0)
    return tarfile.open(fileobj=buf, mode="r:gz")


def test_safe_extract_selected(tmp_path: Path) -> None:
    tar = _tar({"package/data/a": b"A", "package/data/b": b"B", "package/other": b"O"})
    out = safe_extract(tar, tmp_path / "x", ["package/data/a"])
    assert out == [(tmp_path / "x" / "package/data/a").resolve()]
    assert out[0].read_bytes() == b"A"
    assert not (tmp_path / "x" / "package" / "other").exists()


@pytest.mark.parametrize("evil", ["../evil", "package/../../evil", "/abs/evil"])
def test_safe_extract_rejects_escape(tmp_path: Path, evil: str) -> None:
    tar = _tar({"ok": b"fine", evil: b"pwned"})
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError):
        safe_extract(tar, dest)
    with pytest.raises(UnsafeArchiveError):
        safe_extract(tar, dest, [evil])
    assert not (tmp_path / "evil").exists()
    assert not (dest / "ok").exists()  # nothing written before the check fails


def test_safe_extract_rejects_links_and_missing(tmp_path: Path) -> None:
    tar = _tar({"ok": b"fine"}, symlink=("link", "../../etc/passwd"))
    with pytest.raises(UnsafeArchiveError, match="not a regular file"):
        safe_extract(tar, tmp_path, ["link"])
    with pytest.raises(UnsafeArchiveError, match="no member"):
        safe_extract(tar, tmp_path, ["nope"])
