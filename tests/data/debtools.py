"""Build small Debian packages and stand-in `apt-get` / `pip` executables for the data tests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def ar_archive(members: dict[str, bytes]) -> bytes:
    """An ar archive (the .deb container) of `members`, in order."""
    out = [b"!<arch>\n"]
    for name, data in members.items():
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}".encode("ascii") + b"`\n"
        out += [header, data, b"\n" if len(data) % 2 else b""]
    return b"".join(out)


def tar_bytes(files: dict[str, bytes], mode: str = "w:xz", links: dict[str, str] | None = None):
    """A tar (compressed per `mode`) with regular `files` and symbolic `links` (name -> target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def deb_bytes(files: dict[str, bytes], compression: str = "xz", **kw) -> bytes:
    """A .deb whose data.tar.<compression> holds `files` (paths like "./usr/share/...")."""
    suffix = f".{compression}" if compression else ""
    mode = f"w:{compression}" if compression else "w"
    return ar_archive(
        {
            "debian-binary": b"2.0\n",
            "control.tar.xz": tar_bytes({"./control": b"Package: x\n"}),
            f"data.tar{suffix}": tar_bytes(files, mode, **kw),
        }
    )


def fake_command(bin_dir: Path, name: str, script: str) -> Path:
    """Write an executable shell script `name` into `bin_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path
