"""Reading files out of a .deb (ar container + data.tar) without dpkg."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from debtools import ar_archive, deb_bytes

from bnn_shift.data import UnsafeArchiveError
from bnn_shift.data.deb import ar_members, read_deb_files


def test_ar_members_odd_sizes_are_padded() -> None:
    data = ar_archive({"a": b"xyz", "b/": b"12", "c": b""})
    assert ar_members(data) == {"a": b"xyz", "b": b"12", "c": b""}


@pytest.mark.parametrize(
    "data, message",
    [
        (b"not an archive", "no !<arch> magic"),
        (ar_archive({"a": b"xyz"})[:-3], "runs past the end"),
        (ar_archive({"a": b"xy"}).replace(b"`\n", b"??", 1), "corrupt ar member header"),
    ],
)
def test_ar_members_rejects_bad_archives(data: bytes, message: str) -> None:
    with pytest.raises(UnsafeArchiveError, match=message):
        ar_members(data, "x.deb")


@pytest.mark.parametrize("compression", ["xz", "gz", "bz2", ""])
def test_read_named_files(tmp_path: Path, compression: str) -> None:
    deb = tmp_path / "p.deb"
    deb.write_bytes(deb_bytes({"./usr/share/d/a.gz": b"A", "./usr/share/d/b": b"BB"}, compression))
    got = read_deb_files(deb, ["usr/share/d/a.gz", "./usr/share/d/b"])
    assert got == {"usr/share/d/a.gz": b"A", "./usr/share/d/b": b"BB"}


def test_missing_file_and_links_rejected(tmp_path: Path) -> None:
    deb = tmp_path / "p.deb"
    deb.write_bytes(deb_bytes({"./usr/a": b"A"}, links={"./usr/link": "/etc/passwd"}))
    with pytest.raises(UnsafeArchiveError, match="no file 'usr/b'"):
        read_deb_files(deb, ["usr/b"])
    with pytest.raises(UnsafeArchiveError, match="not a regular file"):
        read_deb_files(deb, ["usr/link"])


def test_unsupported_compression_names_dpkg_deb(tmp_path: Path) -> None:
    deb = tmp_path / "p.deb"
    deb.write_bytes(ar_archive({"debian-binary": b"2.0\n", "data.tar.zst": b"\x28\xb5"}))
    with pytest.raises(UnsafeArchiveError, match="dpkg-deb -x"):
        read_deb_files(deb, ["usr/a"])


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed")
def test_agrees_with_dpkg_deb(tmp_path: Path) -> None:
    """Our synthetic package is a valid .deb: dpkg-deb extracts the same bytes."""
    deb = tmp_path / "p.deb"
    deb.write_bytes(deb_bytes({"./usr/share/d/a.gz": b"payload\x00\x01"}))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path / "x")], check=True)
    assert (tmp_path / "x/usr/share/d/a.gz").read_bytes() == b"payload\x00\x01"
    assert read_deb_files(deb, ["usr/share/d/a.gz"])["usr/share/d/a.gz"] == b"payload\x00\x01"
