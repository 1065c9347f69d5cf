"""Reading a Debian package (.deb) without dpkg: the ar container and its data.tar member.

A .deb is an ar archive ("!<arch>\\n", then per member a 60-byte header and the data padded to
an even length) holding debian-binary, control.tar.* and data.tar.*; the installed files are in
data.tar (gz, xz, bz2 or uncompressed; zstd needs dpkg-deb).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from bnn_shift.data.errors import UnsafeArchiveError

_AR_MAGIC = b"!<arch>\n"
_HEADER = 60
_TAR_MODES = {
    "data.tar": "r:",
    "data.tar.gz": "r:gz",
    "data.tar.xz": "r:xz",
    "data.tar.bz2": "r:bz2",
}


def ar_members(data: bytes, source: str = "<deb>") -> dict[str, bytes]:
    """The members of an ar archive, by name (GNU "name/" endings stripped)."""
    if not data.startswith(_AR_MAGIC):
        raise UnsafeArchiveError(f"{source}: not an ar archive (no !<arch> magic)")
    out: dict[str, bytes] = {}
    pos = len(_AR_MAGIC)
    while pos < len(data):
        header = data[pos : pos + _HEADER]
        if len(header) < _HEADER or header[58:60] != b"`\n":
            raise UnsafeArchiveError(f"{source}: corrupt ar member header at byte {pos}")
        name = header[:16].decode("ascii", "replace").strip().removesuffix("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise UnsafeArchiveError(f"{source}: bad ar member size at byte {pos}") from None
        start = pos + _HEADER
        if size < 0 or start + size > len(data):
            raise UnsafeArchiveError(f"{source}: ar member {name!r} runs past the end")
        out[name] = data[start : start + size]
        pos = start + size + (size % 2)
    return out


def read_deb_files(deb: str | Path, paths: list[str]) -> dict[str, bytes]:
    """The contents of the regular files `paths` (e.g. "usr/share/x/y") of the package `deb`.

    Only the named members are read, in memory; a missing path or a member that is not a
    regular file (a link, a device) raises UnsafeArchiveError.
    """
    deb = Path(deb)
    members = ar_members(deb.read_bytes(), str(deb))
    names = [n for n in members if n.startswith("data.tar")]
    if len(names) != 1:
        raise UnsafeArchiveError(f"{deb}: expected one data.tar member, found {names}")
    mode = _TAR_MODES.get(names[0])
    if mode is None:
        raise UnsafeArchiveError(
            f"{deb}: {names[0]} is not readable here (supported: {', '.join(_TAR_MODES)}); "
            "extract the package with `dpkg-deb -x` and pass the directory instead"
        )
    out = {}
    with tarfile.open(fileobj=io.BytesIO(members[names[0]]), mode=mode) as tar:
        by_path = {m.name.removeprefix("./"): m for m in tar.getmembers()}
        for path in paths:
            member = by_path.get(path.removeprefix("./"))
            if member is None:
                raise UnsafeArchiveError(f"{deb}: package has no file {path!r}")
            if not member.isfile():
                raise UnsafeArchiveError(f"{deb}: {path!r} is not a regular file")
            f = tar.extractfile(member)
            assert f is not None  # regular files always have a stream
            out[path] = f.read()
    return out
