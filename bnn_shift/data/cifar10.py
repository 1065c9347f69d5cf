"""CIFAR-10 from a user-supplied copy in the standard python-batch format.

CIFAR-10 ships in no registry package, so it is never fetched. The loader reads
`cifar-10-batches-py/` (data_batch_1..5, test_batch, batches.meta) or the release archive
`cifar-10-python.tar.gz`, given directly or found in `data_dir` (or $BNN_SHIFT_CIFAR10_DIR).
Each batch is a pickled dict with b"data", (n, 3072) uint8 holding the R, G and B 32x32 planes
of each image in turn, and b"labels"; it is read with the restricted unpickler.
"""

from __future__ import annotations

import logging
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bnn_shift.data.dataset import Dataset
from bnn_shift.data.errors import ChecksumError, DataNotFoundError
from bnn_shift.data.safe_pickle import PickleContentError, load_pickled_arrays

log = logging.getLogger(__name__)

ENV_CIFAR10_DIR = "BNN_SHIFT_CIFAR10_DIR"
BATCH_DIR = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# the paper's normalisation (REFERENCE §1.8): per-channel mean, one std
MEAN, STD = (0.49, 0.48, 0.44), 0.2
N_TRAIN, N_TEST = 50000, 10000

_HOW_TO = (
    "CIFAR-10 is not in any package registry; download the python version "
    f"({ARCHIVE}) from https://www.cs.toronto.edu/~kriz/cifar.html and either\n"
    f"  - pass data_dir=PATH to load_cifar10: the archive, a directory holding it, "
    f"{BATCH_DIR}/ itself, or a directory holding {BATCH_DIR}/;\n"
    f"  - or set {ENV_CIFAR10_DIR}=PATH (same choices)."
)

Reader = Callable[[str], bytes]  # batch file name -> its bytes


def load_cifar10(data_dir: str | Path | None = None) -> Dataset:
    """CIFAR-10 as (n, 32, 32, 3) float32, normalised as (pixel/255 - mean_c) / 0.2."""
    raw = load_cifar10_uint8(data_dir)
    mean = np.asarray(MEAN, np.float32)

    def norm(images: np.ndarray) -> np.ndarray:  # (n, 32, 32, 3) uint8 -> float32
        return (images.astype(np.float32) / 255.0 - mean) / np.float32(STD)

    return Dataset(
        name="cifar10",
        x_train=norm(raw["train_images"]),
        y_train=raw["train_labels"].astype(np.int32),
        x_test=norm(raw["test_images"]),
        y_test=raw["test_labels"].astype(np.int32),
        n_classes=10,
        mean=MEAN,
        std=STD,
        classes=raw["classes"],
    )


def load_cifar10_uint8(data_dir: str | Path | None = None) -> dict[str, Any]:
    """train_images (n, 32, 32, 3) uint8, train_labels (n,) uint8, test_images, test_labels and
    classes (the names in batches.meta, else the standard ones)."""
    if data_dir is None:
        env = os.environ.get(ENV_CIFAR10_DIR)
        if not env:
            raise DataNotFoundError(f"no CIFAR-10 location given.\n{_HOW_TO}")
        data_dir = Path(env).expanduser()
    path = Path(data_dir)
    archive = _archive(path)
    if archive is not None:
        with tarfile.open(archive, "r:*") as tar:
            return _read_batches(lambda name: _tar_member(tar, archive, name), str(archive))
    batch_dir = path / BATCH_DIR if (path / BATCH_DIR).is_dir() else path
    if not batch_dir.is_dir():
        raise DataNotFoundError(f"CIFAR-10 path {path} does not exist.\n{_HOW_TO}")
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if not (batch_dir / n).is_file()]
    if missing:
        raise DataNotFoundError(f"{batch_dir} lacks CIFAR-10 batches {missing}.\n{_HOW_TO}")
    return _read_batches(lambda name: (batch_dir / name).read_bytes(), str(batch_dir))


def _archive(path: Path) -> Path | None:
    if path.is_file():
        return path
    if (path / ARCHIVE).is_file() and not (path / BATCH_DIR).is_dir():
        return path / ARCHIVE
    return None


def _tar_member(tar: tarfile.TarFile, archive: Path, name: str) -> bytes:
    try:
        member = tar.getmember(f"{BATCH_DIR}/{name}")
    except KeyError:
        raise DataNotFoundError(f"{archive} has no {BATCH_DIR}/{name}.\n{_HOW_TO}") from None
    f = tar.extractfile(member) if member.isfile() else None
    if f is None:
        raise ChecksumError(f"{archive}: {BATCH_DIR}/{name} is not a regular file")
    return f.read()


def _read_batches(read: Reader, source: str) -> dict[str, Any]:
    train = [decode_batch(read(n), f"{source}/{n}") for n in TRAIN_BATCHES]
    test_images, test_labels = decode_batch(read(TEST_BATCH), f"{source}/{TEST_BATCH}")
    try:
        classes = _class_names(read(META), f"{source}/{META}")
    except FileNotFoundError:  # batches.meta is optional (DataNotFoundError is one too)
        classes = CLASSES
    train_images = np.concatenate([b[0] for b in train])
    if (len(train_images), len(test_images)) != (N_TRAIN, N_TEST):
        log.warning(
            "%s holds %d train and %d test images, not the full CIFAR-10 (%d and %d)",
            source,
            len(train_images),
            len(test_images),
            N_TRAIN,
            N_TEST,
        )
    return {
        "train_images": train_images,
        "train_labels": np.concatenate([b[1] for b in train]),
        "test_images": test_images,
        "test_labels": test_labels,
        "classes": classes,
    }


def _unpickle_dict(data: bytes, source: str) -> dict[bytes, Any]:
    try:
        obj = load_pickled_arrays(data, source)
    except PickleContentError as e:
        raise ChecksumError(f"{e}; is this a CIFAR-10 python batch?") from e
    if not isinstance(obj, dict):
        raise ChecksumError(f"{source} holds a {type(obj).__name__}, expected a dict")
    # Python 2 pickles give bytes keys; a copy re-pickled by Python 3 may use str keys
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def decode_batch(data: bytes, source: str = "<batch>") -> tuple[np.ndarray, np.ndarray]:
    """One python-format batch -> images (n, 32, 32, 3) uint8 and labels (n,) uint8."""
    batch = _unpickle_dict(data, source)
    if b"data" not in batch or b"labels" not in batch:
        raise ChecksumError(f"{source} lacks b'data' or b'labels' (keys {sorted(batch)})")
    flat = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if flat.dtype != np.uint8 or flat.ndim != 2 or flat.shape[1] != 3 * 32 * 32:
        raise ChecksumError(f"{source}: data is {flat.dtype}{flat.shape}, expected uint8 (n, 3072)")
    if labels.shape != (len(flat),) or not np.issubdtype(labels.dtype, np.integer):
        raise ChecksumError(f"{source}: {labels.shape} labels for {len(flat)} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ChecksumError(f"{source}: labels outside 0..9")
    images = flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # planes -> (n, 32, 32, 3)
    return np.ascontiguousarray(images), labels.astype(np.uint8)


def _class_names(data: bytes, source: str) -> tuple[str, ...]:
    names = _unpickle_dict(data, source).get(b"label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise ChecksumError(f"{source}: label_names is not a list of 10 names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
