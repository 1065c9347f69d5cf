"""Image corruptions (MNIST-C, CIFAR-10-C) and their registry.

`corrupt(images, name, severity, seed, benchmark)` corrupts a batch in pixel space (uint8
0..255 or floats in [0, 1]); `to_uint8(images01, benchmark)` stores [0, 1] results as the
benchmark's release did; `corruption_shifts(dataset, ...)` wraps corruptions as `Shift`s on
normalised inputs for `evaluate`. `MNIST_C` and `CIFAR10_C` map each benchmark's corruption
names, in the published order, to their `Corruption` records; `RELEASES` adds what a release
holds besides them (MNIST-C's `identity`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from bnn_shift.shift.corruptions import _ops
from bnn_shift.shift.corruptions._corruption import Corruption, CorruptionFn
from bnn_shift.shift.corruptions.mnist_c import MNIST_C, MNIST_C_EXTRA
from bnn_shift.shift.noise import Shift

try:
    from bnn_shift.shift.corruptions.cifar10_c import CIFAR10_C
except ModuleNotFoundError as err:  # the CIFAR-10-C module not written yet
    if err.name != "bnn_shift.shift.corruptions.cifar10_c":
        raise
    CIFAR10_C: dict[str, Corruption] = {}

if TYPE_CHECKING:
    from bnn_shift.data import Dataset

__all__ = [
    "BENCHMARKS",
    "CIFAR10_C",
    "MNIST_C",
    "RELEASES",
    "Corruption",
    "CorruptionFn",
    "corrupt",
    "corruption_shifts",
    "get_corruption",
    "to_uint8",
]

# the corruptions of each benchmark (the default set, and the one its mean is taken over)
BENCHMARKS: dict[str, dict[str, Corruption]] = {"mnist-c": MNIST_C, "cifar10-c": CIFAR10_C}
# everything each release holds, in its order: MNIST-C's starts with the clean `identity` set
RELEASES: dict[str, dict[str, Corruption]] = {
    "mnist-c": {**MNIST_C_EXTRA, **MNIST_C},
    "cifar10-c": CIFAR10_C,
}
# how each release stored its float results as uint8: the CIFAR-10-C generator saves
# `np.uint8(x * 255)` (truncation), MNIST-C's notebook `np.round(x * 255)`
_STORAGE = {"mnist-c": "round", "cifar10-c": "truncate"}
# which severities a benchmark's static release holds, used when none are asked for
_RELEASE_SEVERITIES = {"mnist-c": "default", "cifar10-c": "all"}
_RANGE_SLACK = 1e-3  # denormalised inputs may stray this far outside [0, 1] by rounding


def to_uint8(images01: np.ndarray, benchmark: str | None = None) -> np.ndarray:
    """Pixel values in [0, 1] -> uint8 0..255 as `benchmark`'s release stored them.

    `"cifar10-c"` truncates (the generator saves `np.uint8(x * 255)`; values within
    `_ops.TRUNCATE_SLACK` of a level below it count as that level, absorbing float32
    round-off), `"mnist-c"` rounds to nearest (its notebook's `np.round`). `None` rounds
    too: the right choice for clean images that lie on the 8-bit grid up to round-off.
    """
    if benchmark is not None and benchmark not in _STORAGE:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {sorted(_STORAGE)}")
    if benchmark is not None and _STORAGE[benchmark] == "truncate":
        return np.rint(_ops.truncate_8bit(images01) * np.float32(255)).astype(np.uint8)
    return np.rint(np.clip(images01, 0.0, 1.0) * 255.0).astype(np.uint8)


def get_corruption(name: str, benchmark: str = "mnist-c") -> Corruption:
    """The registry entry for `name` in `benchmark` (`"mnist-c"` or `"cifar10-c"`),
    including what the release holds besides the benchmark's corruptions (`RELEASES`)."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {sorted(BENCHMARKS)}")
    table = RELEASES[benchmark]
    if not table:
        raise ValueError(f"no corruptions are registered for {benchmark!r}")
    if name not in table:
        raise ValueError(
            f"unknown {benchmark} corruption {name!r}; valid names: {', '.join(table)}"
        )
    return table[name]


def _severity(entry: Corruption, severity: int | None) -> int:
    if severity is None:
        return entry.default_severity
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer):
        raise ValueError(f"severity must be an integer; got {severity!r}")
    if int(severity) not in entry.severities:
        raise ValueError(
            f"{entry.benchmark} {entry.name} has severities {entry.severities}; got {severity}"
        )
    return int(severity)


def _rng(seed: int, entry: Corruption, severity: int) -> np.random.Generator:
    """A generator keyed by (seed, benchmark/name, severity); stable across processes."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    tag = zlib.crc32(f"{entry.benchmark}/{entry.name}".encode())
    return np.random.default_rng([int(seed), tag, severity])


def _as_batch(images: np.ndarray) -> np.ndarray:
    """Validate pixel-space images (uint8 or floats in [0, 1]) and return them as float32
    `(n, H, W, C)` in [0, 1]."""
    x = np.asarray(images)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(255)
    elif not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"images must be uint8 (0..255) or floats in [0, 1]; got dtype {x.dtype} "
            "(convert other integer images to uint8 or divide them by their maximum)"
        )
    if x.ndim not in (3, 4):
        raise ValueError(f"images must be (n, H, W) or (n, H, W, C); got shape {x.shape}")
    x = x[..., None] if x.ndim == 3 else x
    if x.shape[1] < 2 or x.shape[2] < 2 or x.shape[3] < 1:
        raise ValueError(f"images must be at least 2 x 2 with a channel; got shape {x.shape}")
    if x.size and not np.isfinite(x).all():
        raise ValueError("images contain NaN or inf")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(
            f"images must lie in [0, 1]; got values in [{x.min():.4g}, {x.max():.4g}] "
            "(denormalise first, e.g. dataset.denormalize(x))"
        )
    return x.astype(np.float32, copy=False)


def corrupt(
    images: np.ndarray,
    name: str,
    severity: int | None = None,
    seed: int = 0,
    benchmark: str = "mnist-c",
) -> np.ndarray:
    """Corrupt a batch of images in pixel space.

    `images` is `(n, H, W)` or `(n, H, W, C)`, either uint8 (0..255) or floats in [0, 1].
    The result has the same shape, and the type of the input: uint8 images give uint8
    images stored as the benchmark's release stored them (`to_uint8(..., benchmark)`:
    CIFAR-10-C truncates, MNIST-C rounds); float images give float32 in [0, 1], not
    quantised. `severity` defaults to the benchmark release's level. Deterministic given
    (`seed`, benchmark, `name`, severity) and the whole batch: the random draws for one
    image depend on its position and on `n`, so corrupt a test set in one call (or fixed
    chunks) to reproduce it.
    """
    entry = get_corruption(name, benchmark)
    level = _severity(entry, severity)
    x = _as_batch(images)
    as_uint8 = np.asarray(images).dtype == np.uint8
    if len(x) == 0:
        return np.zeros(np.shape(images), np.uint8 if as_uint8 else np.float32)
    y = entry.fn(x, level, _rng(seed, entry, level))
    if y.shape != x.shape:
        raise RuntimeError(f"{benchmark} {name} returned shape {y.shape} for input {x.shape}")
    y = np.clip(y, 0.0, 1.0).astype(np.float32, copy=False).reshape(np.shape(images))
    return to_uint8(y, benchmark) if as_uint8 else y


def _levels(entry: Corruption, severities: Sequence[int] | str | None) -> tuple[int, ...]:
    if severities is None:
        severities = _RELEASE_SEVERITIES[entry.benchmark]
    if severities == "default":
        return (entry.default_severity,)
    if severities == "all":
        return entry.severities
    if isinstance(severities, str):
        raise ValueError(f"severities must be 'default', 'all' or integers; got {severities!r}")
    return tuple(_severity(entry, s) for s in severities)


def corruption_shifts(
    dataset: Dataset,
    benchmark: str = "mnist-c",
    names: Sequence[str] | None = None,
    severities: Sequence[int] | Literal["default", "all"] | None = None,
    seed: int = 0,
) -> list[Shift]:
    """One `Shift` per (corruption, severity), mapping `dataset`-normalised inputs.

    `apply(x)` takes `(n, H, W, C)` (or flat `(n, H*W*C)`) normalised inputs, corrupts
    them in pixel space and normalises back. `names` defaults to every corruption of
    `benchmark` in the published order; `severities` to the release's (the default level
    for MNIST-C, all five for CIFAR-10-C), or `"default"`, `"all"` or a list of levels.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {sorted(BENCHMARKS)}")
    names = (
        list(BENCHMARKS[benchmark])
        if names is None
        else [names]
        if isinstance(names, str)
        else list(names)
    )
    if not names:
        raise ValueError(f"no {benchmark} corruptions chosen (names is empty or none registered)")
    entries = [get_corruption(n, benchmark) for n in names]
    image_shape = tuple(dataset.image_shape)
    shifts = []
    for entry in entries:
        for level in _levels(entry, severities):
            _rng(seed, entry, level)  # validate the seed now, not at apply time
            apply = _pixel_space(dataset, image_shape, entry, level, seed)
            shifts.append(Shift(entry.name, level, apply))
    return shifts


def _pixel_space(dataset, image_shape, entry: Corruption, level: int, seed: int):
    """`apply` for one corruption: normalised -> [0, 1] -> corrupted -> normalised."""

    def apply(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        flat = x.ndim == 2
        images = x.reshape(len(x), *image_shape) if flat else x
        if images.shape[1:] != image_shape:
            raise ValueError(
                f"{entry.name}: inputs have shape {x.shape[1:]}, expected {image_shape} "
                "(or flat) for this dataset"
            )
        raw = dataset.denormalize(images)
        if raw.size and (raw.min() < -_RANGE_SLACK or raw.max() > 1 + _RANGE_SLACK):
            raise ValueError(
                f"{entry.name}: denormalised inputs span [{raw.min():.3g}, {raw.max():.3g}], "
                "not [0, 1]; are they normalised with this dataset's mean and std?"
            )
        out = corrupt(np.clip(raw, 0.0, 1.0), entry.name, level, seed, entry.benchmark)
        out = dataset.normalize(out).astype(np.float32, copy=False)
        return out.reshape(x.shape)

    return apply
