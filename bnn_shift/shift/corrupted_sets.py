"""Writing corrupted test sets to disk in the published layouts, with checksums; and a cache.

The layouts (MNIST-C: one directory per corruption; CIFAR-10-C: one severity-major file per
corruption) are those of the static releases, described in `corrupted_layouts`, so an
official download and a set written here read the same way. Files are plain `.npy`
(memory-mappable, the releases' format; never pickle). Sets written here also get
`manifest.json`: each file's sha256, the corruption and severities it holds, the seed, the
sha256 of the clean images it was made from, and the generator (package version and a hash of
the corruption code). Writing is resumable: entries already present with a matching manifest
and checksum are kept, the rest generated. Images are quantised to uint8 as each release
did (`to_uint8(..., benchmark)`: MNIST-C rounds, so sets differ from `corrupt` by at most half
a grey level; CIFAR-10-C truncates, by less than one level, always downwards).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from bnn_shift.data import ChecksumError, Dataset
from bnn_shift.data.cache import array_digest, atomic_write, data_home, file_digest
from bnn_shift.shift import corruptions
from bnn_shift.shift.corrupted_layouts import (
    CIFAR_SEVERITIES,
    FORMAT,
    MANIFEST,
    CorruptedSet,
    cached_apply,
    from_manifest,
    load_cifar10_c,
    load_corrupted,
    load_mnist_c,
    read_manifest,
    to_uint8,
)
from bnn_shift.shift.corruptions._frost import ENV_FROST_DIR
from bnn_shift.shift.noise import Shift

__all__ = [
    "MANIFEST",
    "CorruptedSet",
    "cached_corruption_shifts",
    "load_cifar10_c",
    "load_corrupted",
    "load_mnist_c",
    "materialise",
    "write_corrupted",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# dataset name -> the benchmark (and layout) of its corruptions
BENCHMARK_OF = {"mnist": "mnist-c", "cifar10": "cifar10-c"}

Severities = Sequence[int] | Literal["default", "all"] | None


@functools.cache
def _code_info() -> dict[str, str]:
    h = hashlib.sha256()
    for path in sorted(Path(corruptions.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    try:
        version = metadata.version("bnn-shift")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"package": "bnn-shift", "version": version, "code_sha256": h.hexdigest()}


def generator_info(benchmark: str) -> dict[str, str]:
    """What the generated images depend on besides the data and seed: the package version, a
    sha256 of the corruption code, and for CIFAR-10-C the frost photos ($BNN_SHIFT_FROST_DIR,
    else the procedural texture)."""
    info = dict(_code_info())
    if benchmark == "cifar10-c":
        frost_dir = os.environ.get(ENV_FROST_DIR)
        h = hashlib.sha256()
        for path in sorted(Path(frost_dir).iterdir()) if frost_dir else []:
            if path.is_file():
                h.update(path.name.encode() + b"\0" + file_digest(path).encode())
        info["frost"] = h.hexdigest() if frost_dir else "procedural"
    return info


def _clean_uint8(dataset: Dataset) -> np.ndarray:
    return to_uint8(dataset.denormalize(dataset.x_test))  # (n, H, W, C)


def _mnist_dir(name: str, severity: int, default: int) -> str:
    return name if severity == default else f"{name}-s{severity}"


def _save(path: Path, array: np.ndarray) -> str:
    with atomic_write(path) as f:
        np.save(f, array, allow_pickle=False)
    return file_digest(path)


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    with atomic_write(directory / MANIFEST) as f:
        f.write(json.dumps(manifest, indent=1, sort_keys=True).encode())


def _valid(directory: Path, manifest: dict[str, Any], rel: str) -> bool:
    """Whether the file `rel` exists and matches its manifest checksum."""
    want = manifest["sha256"].get(rel)
    path = directory / rel
    return want is not None and path.is_file() and file_digest(path) == want


def _benchmark(dataset: Dataset, benchmark: str | None) -> str:
    benchmark = benchmark or BENCHMARK_OF.get(dataset.name)
    if benchmark not in corruptions.BENCHMARKS:
        raise ValueError(
            f"no corruption benchmark {benchmark!r} for dataset {dataset.name!r}; pass "
            f"benchmark= one of {sorted(corruptions.BENCHMARKS)}"
        )
    return benchmark


def _selection(benchmark: str, names, severities) -> dict[str, Severities]:
    """corruption -> the severities asked of it, checked without touching any data. Explicit
    severities are intersected with each corruption's own levels (e.g. stripe has only 1); a
    corruption left with none is an error."""
    table = corruptions.BENCHMARKS[benchmark]
    names = list(table) if names is None else [names] if isinstance(names, str) else list(names)
    chosen: dict[str, Severities] = {}
    for name in names:
        own = corruptions.get_corruption(name, benchmark).severities
        chosen[name] = severities
        if severities is not None and not isinstance(severities, str):
            chosen[name] = [int(s) for s in severities if int(s) in own]
            if not chosen[name]:
                raise ValueError(
                    f"{benchmark} {name} has severities {own}, none of {list(severities)}"
                )
    return chosen


def _wanted(dataset, benchmark, names, severities, seed) -> dict[str, list[int]]:
    """corruption -> severities to hold (see `_selection`), validated by corruption_shifts."""
    wanted: dict[str, list[int]] = {}
    for name, levels in _selection(benchmark, names, severities).items():
        for s in corruptions.corruption_shifts(dataset, benchmark, [name], levels, seed):
            wanted.setdefault(s.name, []).append(int(s.severity))
    return wanted


def materialise(
    dataset: Dataset,
    out_dir: str | Path,
    benchmark: str | None = None,
    names: Sequence[str] | None = None,
    severities: Severities = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Write `dataset`'s corrupted test images to `out_dir` in `benchmark`'s layout; return the
    manifest. Entries already there (same source images, seed and generator, checksum intact)
    are kept; anything missing or mismatching is (re)generated. `names`/`severities` as in
    `corruption_shifts` (default: every corruption at the release's severities)."""
    benchmark = _benchmark(dataset, benchmark)
    wanted = _wanted(dataset, benchmark, names, severities, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean = _clean_uint8(dataset)  # (n, H, W, C)
    labels = dataset.y_test.astype(np.uint8)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "benchmark": benchmark,
        "dataset": dataset.name,
        "n": len(clean),
        "image_shape": list(clean.shape[1:]),
        "seed": int(seed),
        "source_sha256": array_digest(clean),
        "labels_sha256": array_digest(labels),
        "generator": generator_info(benchmark),
    }
    old = read_manifest(out)
    same = old is not None and all(old.get(k) == v for k, v in header.items())
    manifest = {**header, "entries": {}, "sha256": {}}
    if same:
        manifest["entries"], manifest["sha256"] = old["entries"], old["sha256"]
    elif old is not None:
        log.warning("%s was made with other settings or code; regenerating it", out / MANIFEST)
    write = _write_mnist_c if benchmark == "mnist-c" else _write_cifar10_c
    # the same pixel-space input corruption_shifts' apply corrupts, so cached = quantised live
    clean01 = np.clip(dataset.denormalize(dataset.x_test), 0.0, 1.0)
    bar = tqdm(
        total=sum(map(len, wanted.values())),
        desc=f"corrupt {dataset.name}",
        unit="set",
        disable=not progress,
    )
    with bar:
        write(out, manifest, wanted, clean01, labels, benchmark, seed, bar)
    return manifest


def _generate(clean01: np.ndarray, name: str, severity: int, seed: int, benchmark: str):
    return to_uint8(corruptions.corrupt(clean01, name, severity, seed, benchmark), benchmark)


def _write_mnist_c(out, manifest, wanted, clean01, labels, benchmark, seed, bar) -> None:
    for name, levels in wanted.items():
        default = corruptions.get_corruption(name, benchmark).default_severity
        for level in levels:
            sub = _mnist_dir(name, level, default)
            rel_x, rel_y = f"{sub}/test_images.npy", f"{sub}/test_labels.npy"
            if (
                rel_x in manifest["entries"]
                and _valid(out, manifest, rel_x)
                and _valid(out, manifest, rel_y)
            ):
                bar.update()
                continue
            bar.set_postfix_str(f"{name}@{level}")
            manifest["sha256"][rel_x] = _save(
                out / rel_x, _generate(clean01, name, level, seed, benchmark)
            )
            manifest["sha256"][rel_y] = _save(out / rel_y, labels)
            manifest["entries"][rel_x] = {
                "corruption": name,
                "severities": [level],
                "labels": rel_y,
            }
            _write_manifest(out, manifest)
            bar.update()
    _write_manifest(out, manifest)


def _write_cifar10_c(out, manifest, wanted, clean01, labels, benchmark, seed, bar) -> None:
    n = len(labels)
    rel_y = "labels.npy"
    if not _valid(out, manifest, rel_y):
        manifest["sha256"][rel_y] = _save(out / rel_y, np.tile(labels, len(CIFAR_SEVERITIES)))
    for name, levels in wanted.items():
        rel_x = f"{name}.npy"
        entry = manifest["entries"].get(rel_x)
        have = entry["severities"] if entry and _valid(out, manifest, rel_x) else []
        missing = [lv for lv in levels if lv not in have]
        if not missing:
            bar.update(len(levels))
            continue
        keep = np.load(out / rel_x, mmap_mode="r") if have else None
        stack = []
        for level in sorted(set(have) | set(levels)):
            if level in have:
                i = have.index(level)
                stack.append(np.array(keep[i * n : (i + 1) * n]))
            else:
                bar.set_postfix_str(f"{name}@{level}")
                stack.append(_generate(clean01, name, level, seed, benchmark))
                bar.update()
        del keep
        manifest["sha256"][rel_x] = _save(out / rel_x, np.concatenate(stack))
        manifest["entries"][rel_x] = {
            "corruption": name,
            "severities": sorted(set(have) | set(levels)),
            "labels": rel_y,
        }
        _write_manifest(out, manifest)
        bar.update(len(levels) - len(missing))
    _write_manifest(out, manifest)


def write_corrupted(
    dataset_name: str | Dataset,
    out_dir: str | Path,
    names: Sequence[str] | None = None,
    severities: Severities = None,
    seed: int = 0,
    progress: bool = True,
    *,
    data_dir: str | Path | None = None,
    n_test: int | None = None,
) -> Path:
    """Write the corrupted test set of "mnist" (MNIST-C layout) or "cifar10" (CIFAR-10-C
    layout), or of a given Dataset, to `out_dir`; return the manifest path. `data_dir` goes to
    the dataset loader; `n_test` takes a stratified test subset (fixed by `seed`)."""
    if isinstance(dataset_name, Dataset):
        dataset = dataset_name
    else:
        from bnn_shift.data import load_dataset

        if dataset_name not in BENCHMARK_OF:
            raise ValueError(
                f"no corruption benchmark for {dataset_name!r}; choose from {sorted(BENCHMARK_OF)}"
            )
        _selection(BENCHMARK_OF[dataset_name], names, severities)  # fail before loading data
        kwargs = {"data_dir": data_dir} if data_dir is not None else {}
        if dataset_name == "mnist":
            kwargs["progress"] = progress
        dataset = load_dataset(dataset_name, **kwargs)
    if n_test is not None:
        dataset = dataset.subset(None, n_test, seed)
    materialise(dataset, out_dir, None, names, severities, seed, progress)
    return Path(out_dir) / MANIFEST


def cached_corruption_shifts(
    dataset: Dataset,
    benchmark: str | None = None,
    names: Sequence[str] | None = None,
    severities: Severities = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> list[Shift]:
    """Like `corruption_shifts`, but the corrupted test images come from an on-disk cache.

    The cache directory (default `data_home()/corrupted/<dataset>-<benchmark>-<hash of the
    clean test images>-seed<seed>`) is filled on first use, missing or damaged entries are
    regenerated, and a Shift whose file fails its checksum when read is regenerated then. Each
    Shift's `apply` only accepts `dataset.x_test` (the images the cache was made from).
    """
    benchmark = _benchmark(dataset, benchmark)
    if cache_dir is None:
        tag = array_digest(_clean_uint8(dataset))[:16]
        cache_dir = data_home() / "corrupted" / f"{dataset.name}-{benchmark}-{tag}-seed{seed}"
    args = (dataset, cache_dir, benchmark, names, severities, seed)
    current = [from_manifest(Path(cache_dir), materialise(*args, progress=progress))]

    def reload() -> CorruptedSet:  # regenerate what fails its checksum, then re-read
        current[0] = from_manifest(Path(cache_dir), materialise(*args, progress=False))
        return current[0]

    wanted = _wanted(dataset, benchmark, names, severities, seed)
    return [
        Shift(name, level, _healing_apply(current, reload, dataset, (name, level)))
        for name, levels in wanted.items()
        for level in levels
    ]


def _healing_apply(current: list[CorruptedSet], reload, dataset: Dataset, key: tuple[str, int]):
    def apply(x: np.ndarray) -> np.ndarray:
        try:
            cset = current[0]
            return cached_apply(cset, dataset, *key, cset.manifest["source_sha256"])(x)
        except ChecksumError as e:
            log.warning("%s; regenerating it", e)
            cset = reload()
            return cached_apply(cset, dataset, *key, cset.manifest["source_sha256"])(x)

    return apply
