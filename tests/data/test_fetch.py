"""fetch.download (through file:// URLs) and fetch.npm_pack (through a stand-in npm script)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from bnn_shift.data import ChecksumError, FetchError, UnsafeArchiveError
from bnn_shift.data.fetch import download, npm_pack


def test_download_checks_sha256(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 1000)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    out = download(src.as_uri(), tmp_path / "d" / "ok.bin", sha256=good, progress=False)
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(ChecksumError, match="sha256"):
        download(src.as_uri(), tmp_path / "d" / "bad.bin", sha256="0" * 64, progress=False)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["ok.bin"]


def _fake_npm(tmp_path: Path, members: dict[str, bytes]) -> str:
    """Put an `npm` on PATH whose `pack` drops a tarball of `members`; return its sha1."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tgz = tmp_path / "pkg-1.0.0.tgz"
    tgz.write_bytes(buf.getvalue())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(f'#!/bin/sh\ncp "{tgz}" .\n')
    npm.chmod(0o755)
    return hashlib.sha1(tgz.read_bytes()).hexdigest()


@pytest.mark.skipif(os.name != "posix", reason="stand-in npm is a shell script")
def test_npm_pack_extracts_only_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha1 = _fake_npm(tmp_path, {"package/data/a": b"A", "package/index.js": b"js"})
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    dest = tmp_path / "cache"
    out = npm_pack("pkg@1.0.0", sha1=sha1, names=["package/data/a"], dest=dest, progress=False)
    assert out == [dest / "a"] and (dest / "a").read_bytes() == b"A"
    assert sorted(p.name for p in dest.iterdir()) == ["a"]
    with pytest.raises(ChecksumError, match="sha1"):
        npm_pack("pkg@1.0.0", sha1="0" * 40, names=["package/data/a"], dest=dest, progress=False)


@pytest.mark.skipif(os.name != "posix", reason="stand-in npm is a shell script")
def test_npm_pack_rejects_escaping_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    sha1 = _fake_npm(tmp_path, {"package/../../evil": b"x"})
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(UnsafeArchiveError):
        npm_pack("p@1", sha1=sha1, names=["package/../../evil"], dest=tmp_path, progress=False)
    assert not (tmp_path.parent / "evil").exists()


def test_npm_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FetchError, match="not on PATH"):
        npm_pack("p@1", sha1="0" * 40, names=[], dest=tmp_path, progress=False)
