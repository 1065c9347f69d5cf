"""Reading corrupted test sets in the MNIST-C and CIFAR-10-C layouts (official or our own).

- MNIST-C: `<dir>/<corruption>/test_images.npy` (n, 28, 28, 1) uint8 and `test_labels.npy`
  (n,) uint8, one severity per corruption (the release default), and `identity/` (the clean
  images, severity 1); sets written by bnn-shift at other severities live in
  `<corruption>-s<severity>/`. Floats are stored rounded to nearest, as MNIST-C's notebook did.
- CIFAR-10-C: `<dir>/<corruption>.npy` (5*n, 32, 32, 3) uint8, severities 1..5
  severity-major, and `labels.npy` (5*n,), the test labels repeated 5 times. Floats are stored
  truncated (`np.uint8(x * 255)`), as the CIFAR-10-C generator did.

A directory written by bnn-shift also has `manifest.json` (see `corrupted_sets`): then the
entries and their severities come from it and every file is checked against its sha256 when read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bnn_shift.data import ChecksumError, DataNotFoundError, Dataset
from bnn_shift.data.cache import array_digest, file_digest
from bnn_shift.shift import corruptions
from bnn_shift.shift.noise import Shift

__all__ = [
    "CIFAR_SEVERITIES",
    "FORMAT",
    "MANIFEST",
    "CorruptedSet",
    "load_cifar10_c",
    "load_corrupted",
    "load_mnist_c",
]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "bnn-shift corrupted set"
CIFAR_SEVERITIES = (1, 2, 3, 4, 5)


def to_uint8(images01: np.ndarray, benchmark: str | None = None) -> np.ndarray:
    """Pixel values in [0, 1] -> uint8 0..255, stored the way `benchmark`'s release did.

    CIFAR-10-C's generator saves `np.uint8(x * 255)`, which truncates; MNIST-C's notebook
    rounds (`np.round`). `benchmark=None` rounds to nearest, for clean images (on the 8-bit
    grid up to float round-off). See `corruptions.to_uint8`.
    """
    return corruptions.to_uint8(images01, benchmark)


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest.json of `directory`, or None when absent, unreadable or not ours."""
    path = directory / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable manifest %s (%s)", path, e)
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        log.warning("ignoring %s: not a %s manifest", path, FORMAT)
        return None
    return manifest


@dataclass(frozen=True)
class CorruptedSet:
    """A corrupted-set directory: which (corruption, severity) images it holds, and where.

    `images(name, severity)` reads one set, checking its sha256 when a manifest records it.
    """

    directory: Path
    benchmark: str  # "mnist-c" | "cifar10-c"
    labels: np.ndarray  # (n,) int32
    entries: dict[tuple[str, int], tuple[str, int]]  # (name, severity) -> (file, block)
    checksums: dict[str, str] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None

    @property
    def keys(self) -> list[tuple[str, int]]:
        return list(self.entries)

    def images(self, name: str, severity: int | None = None) -> np.ndarray:
        """(n, H, W, C) uint8 images of corruption `name` at `severity` (None: the only one)."""
        if severity is None:
            levels = [s for (n, s) in self.entries if n == name]
            if len(levels) > 1:
                raise ValueError(f"{name!r} has severities {levels}; pass severity=")
            severity = levels[0] if levels else -1  # -1: reported as missing below
        key = (name, int(severity))
        if key not in self.entries:
            raise KeyError(
                f"{self.directory} has no {name!r}"
                + (f" at severity {severity}" if severity != -1 else "")
                + f"; it holds {sorted(self.entries)}"
            )
        rel, block = self.entries[key]
        path = self.directory / rel
        want = self.checksums.get(rel)
        if want is not None and file_digest(path) != want:
            raise ChecksumError(f"{path} does not match its manifest sha256")
        data = np.load(path, mmap_mode="r", allow_pickle=False)
        n = len(self.labels)
        x = np.asarray(data[block * n : (block + 1) * n])
        return _as_uint8_nhwc(x, path)

    def shifts(self, dataset: Dataset) -> list[Shift]:
        """One Shift per held set; `apply(x)` returns that set normalised like `dataset`, for
        x = the clean test inputs it was made from (checked when the manifest records them)."""
        source = (self.manifest or {}).get("source_sha256")
        return [
            Shift(name, sev, cached_apply(self, dataset, name, sev, source))
            for name, sev in self.entries
        ]


def _as_uint8_nhwc(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"{path}: images have shape {x.shape}, expected (n, H, W[, C])")
    if x.dtype != np.uint8:  # some copies store float 0..255
        if not np.issubdtype(x.dtype, np.floating) or x.min() < 0 or x.max() > 255:
            raise ValueError(f"{path}: images are {x.dtype}, expected uint8 0..255")
        x = np.rint(x).astype(np.uint8)
    return x


def _check_source(x: np.ndarray, dataset: Dataset, n: int, source: str | None, what: str):
    images = x.reshape(len(x), *dataset.image_shape) if x.ndim == 2 else x
    if len(images) != n:
        raise ValueError(f"{what} holds {n} images but got {len(images)} inputs")
    if source is not None and array_digest(to_uint8(dataset.denormalize(images))) != source:
        raise ValueError(
            f"{what} was made from other clean images than these inputs; use "
            "corruption_shifts(...) to corrupt arbitrary inputs"
        )


def cached_apply(cset: CorruptedSet, dataset: Dataset, name: str, sev: int, source):
    """Shift.apply returning the stored set `name`@`sev` normalised like `dataset`; `source` is
    the sha256 of the clean uint8 images it was made from (None: only the count is checked)."""

    def apply(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        _check_source(x, dataset, len(cset.labels), source, f"{cset.directory} {name}@{sev}")
        images = cset.images(name, sev).astype(np.float32) / 255.0
        return dataset.normalize(images).astype(np.float32).reshape(x.shape)

    return apply


def load_corrupted(directory: str | Path, layout: str | None = None) -> CorruptedSet:
    """Read a corrupted-set directory: one written here (with manifest.json) or an official
    MNIST-C / CIFAR-10-C download (same layout, no manifest). `layout` forces "mnist-c" or
    "cifar10-c"; by default it is taken from the manifest or guessed from the files."""
    d = Path(directory)
    if not d.is_dir():
        raise DataNotFoundError(f"corrupted-set directory {d} does not exist")
    manifest = read_manifest(d)
    if manifest is not None:
        if layout is not None and manifest["benchmark"] != layout:
            raise ValueError(f"{d} holds {manifest['benchmark']}, not {layout}")
        return from_manifest(d, manifest)
    if layout is None:
        layout = "mnist-c" if any(d.glob("*/test_images.npy")) else "cifar10-c"
    return _official_mnist_c(d) if layout == "mnist-c" else _official_cifar10_c(d)


def load_mnist_c(directory: str | Path) -> CorruptedSet:
    """An MNIST-C directory (official or written by `write_corrupted`)."""
    return load_corrupted(directory, "mnist-c")


def load_cifar10_c(directory: str | Path) -> CorruptedSet:
    """A CIFAR-10-C directory (official or written by `write_corrupted`)."""
    return load_corrupted(directory, "cifar10-c")


def _load_labels(path: Path, want: str | None = None) -> np.ndarray:
    if want is not None and file_digest(path) != want:
        raise ChecksumError(f"{path} does not match its manifest sha256")
    y = np.load(path, allow_pickle=False)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{path}: labels are {y.dtype}{y.shape}, expected (n,) integers")
    return y.astype(np.int32)


def _ordered(entries: dict, benchmark: str) -> dict:
    """Entries in the benchmark's published corruption order, then by severity."""
    order = {name: i for i, name in enumerate(corruptions.RELEASES.get(benchmark, {}))}
    return dict(sorted(entries.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0])))


def from_manifest(d: Path, manifest: dict[str, Any]) -> CorruptedSet:
    """The CorruptedSet described by `manifest` (read from, or written to, `d`)."""
    entries, first_labels = {}, None
    for rel, e in sorted(manifest["entries"].items()):
        for block, sev in enumerate(e["severities"]):
            entries[(e["corruption"], int(sev))] = (rel, block)
        first_labels = first_labels or e["labels"]
    if first_labels is None:
        raise DataNotFoundError(f"{d / MANIFEST} lists no corrupted sets")
    y = _load_labels(d / first_labels, manifest["sha256"].get(first_labels))
    labels = y[: manifest["n"]]
    entries = _ordered(entries, manifest["benchmark"])
    return CorruptedSet(d, manifest["benchmark"], labels, entries, manifest["sha256"], manifest)


def _official_mnist_c(d: Path) -> CorruptedSet:
    dirs = sorted(p.parent for p in d.glob("*/test_images.npy"))
    if not dirs:
        raise DataNotFoundError(f"{d} has no <corruption>/test_images.npy (MNIST-C layout)")
    entries, labels = {}, None
    for sub in dirs:
        name, _, tail = sub.name.partition("-s")
        known = corruptions.RELEASES["mnist-c"]  # identity and the 15 corruptions
        if name in known:
            sev = int(tail) if tail.isdigit() else known[name].default_severity
        else:
            sev = 0  # a corruption this package does not generate
        y = _load_labels(sub / "test_labels.npy")
        if labels is None:
            labels = y
        elif not np.array_equal(labels, y):
            raise ValueError(f"{sub / 'test_labels.npy'} differs from the other directories'")
        entries[(name, sev)] = (f"{sub.name}/test_images.npy", 0)
    return CorruptedSet(d, "mnist-c", labels, _ordered(entries, "mnist-c"))


def _official_cifar10_c(d: Path) -> CorruptedSet:
    if not (d / "labels.npy").is_file():
        raise DataNotFoundError(f"{d} has no labels.npy (CIFAR-10-C layout)")
    tiled = _load_labels(d / "labels.npy")
    k = len(CIFAR_SEVERITIES)
    n = len(tiled) // k
    if len(tiled) % k or not np.array_equal(tiled, np.tile(tiled[:n], k)):
        raise ValueError(f"{d / 'labels.npy'} is not the test labels repeated {k} times")
    entries = {}
    for path in sorted(d.glob("*.npy")):
        if path.name == "labels.npy":
            continue
        rows = np.load(path, mmap_mode="r", allow_pickle=False).shape[0]
        if rows != k * n:
            raise ValueError(f"{path} has {rows} images, expected {k} severities x {n}")
        for block, sev in enumerate(CIFAR_SEVERITIES):
            entries[(path.stem, sev)] = (path.name, block)
    if not entries:
        raise DataNotFoundError(f"{d} has no <corruption>.npy files (CIFAR-10-C layout)")
    return CorruptedSet(d, "cifar10-c", tiled[:n], _ordered(entries, "cifar10-c"))
