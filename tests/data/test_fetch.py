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


@pytest.mark.skipif(os.name != "posix", reason="stand-in npm is a shell script")
@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("exit 1", "exit status 1, no message"),  # what --silent left: no reason at all
        ("echo 'npm error code E404' >&2; exit 1", "npm error code E404"),
        ("echo 'npm error network' ; exit 1", "npm error network"),
    ],
)
def test_npm_pack_failures_say_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script, reason):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    args = tmp_path / "args"
    (bin_dir / "npm").write_text(f'#!/bin/sh\necho "$@" > "{args}"\n{script}\n')
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(FetchError, match=f"`npm pack p@1` failed: {reason}"):
        npm_pack("p@1", sha1="0" * 40, names=[], dest=tmp_path, progress=False)
    given = args.read_text().split()
    assert "--silent" not in given and "--fetch-retries=1" in given  # no ~70 s offline stall


def test_npm_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FetchError, match="not on PATH"):
        npm_pack("p@1", sha1="0" * 40, names=[], dest=tmp_path, progress=False)


# --- apt_download / pip_download through stand-in executables --------------------------------


def _deb_named(tmp_path: Path, version: str) -> tuple[Path, str]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    deb = src / f"pkg_{version.replace('~', '%7e')}_all.deb"
    deb.write_bytes(b"!<arch>\n" + version.encode())
    return deb, hashlib.sha256(deb.read_bytes()).hexdigest()


@pytest.mark.skipif(os.name != "posix", reason="stand-in apt-get is a shell script")
def test_apt_download_pinned_version_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from debtools import fake_command

    from bnn_shift.data.fetch import apt_download

    deb, sha = _deb_named(tmp_path, "1.0~git-1")
    log = tmp_path / "calls"
    fake_command(tmp_path / "bin", "apt-get", f'echo "$@" >> "{log}"\ncp "{deb}" .\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    got = apt_download("pkg", version="1.0~git-1", sha256=sha, dest=tmp_path / "a", progress=False)
    assert got.read_bytes() == deb.read_bytes()
    assert log.read_text().split("\n")[0] == "download pkg=1.0~git-1"
    with pytest.raises(ChecksumError, match="sha256"):
        apt_download("pkg", version="1.0~git-1", sha256="0" * 64, dest=tmp_path / "b")


@pytest.mark.skipif(os.name != "posix", reason="stand-in apt-get is a shell script")
def test_apt_download_falls_back_to_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from debtools import fake_command

    from bnn_shift.data.fetch import apt_download

    deb, _ = _deb_named(tmp_path, "2.0-1")
    # the pinned version is unknown to this archive; the bare package name works
    script = f'case "$2" in *=*) echo "E: Version not found" >&2; exit 100;; esac\ncp "{deb}" .\n'
    fake_command(tmp_path / "bin", "apt-get", script)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    got = apt_download("pkg", version="1.0-1", sha256="0" * 64, dest=tmp_path / "a")
    assert got.name == deb.name
    assert "unchecked" in caplog.text

    fake_command(tmp_path / "bin", "apt-get", 'echo "E: Unable to locate package" >&2; exit 100\n')
    with pytest.raises(FetchError, match="Unable to locate package"):
        apt_download("pkg", version="1.0-1", sha256="0" * 64, dest=tmp_path / "c")


def test_apt_get_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bnn_shift.data.fetch import apt_download

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FetchError, match="apt-get is not on PATH"):
        apt_download("pkg", version="1", sha256="0" * 64, dest=tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="stand-in python is a shell script")
def test_pip_download_checks_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from debtools import fake_command

    from bnn_shift.data.fetch import pip_download

    wheel = tmp_path / "w-1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK wheel")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    log = tmp_path / "calls"
    # pip is called as `python -m pip download REQ ... -d DEST`; the last argument is DEST
    script = f'echo "$@" > "{log}"\nfor last; do :; done\ncp "{wheel}" "$last"\n'
    monkeypatch.setattr(sys, "executable", str(fake_command(tmp_path / "bin", "python", script)))
    got = pip_download("w==1.0", sha256=sha, dest=tmp_path / "d", progress=False)
    assert got.read_bytes() == b"PK wheel"
    assert log.read_text().startswith("-m pip download w==1.0 --no-deps")
    with pytest.raises(ChecksumError, match="sha256"):
        pip_download("w==1.0", sha256="0" * 64, dest=tmp_path / "e", progress=False)
    fake_command(tmp_path / "bin", "python", 'echo "No matching distribution" >&2; exit 1\n')
    with pytest.raises(FetchError, match="No matching distribution"):
        pip_download("w==1.0", sha256=sha, dest=tmp_path / "f", progress=False)
