"""Fashion-MNIST (60k/10k, 10 clothing classes): the same four-file IDX layout as MNIST.

Search order: `data_dir`, $BNN_SHIFT_FASHION_MNIST_DIR, the cache `data_home()/fashion-mnist`,
then (when `download`) the Debian package dataset-fashion-mnist, fetched with
`apt-get download` and read without installing it. Every decoded array is checksum-verified
(the package's .gz bytes differ from the upstream release; the decoded arrays match).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bnn_shift.data import deb, fetch
from bnn_shift.data.cache import atomic_write
from bnn_shift.data.dataset import Dataset
from bnn_shift.data.errors import ChecksumError, DataNotFoundError, FetchError, UnsafeArchiveError
from bnn_shift.data.idx_sets import STEMS, IdxFile, IdxSet, gray_dataset, load_uint8

ENV_FASHION_MNIST_DIR = "BNN_SHIFT_FASHION_MNIST_DIR"
# mean and std of the 60,000 training pixels / 255
MEAN, STD = 0.2860, 0.3530
DEB_PACKAGE = "dataset-fashion-mnist"
DEB_VERSION = "0.0~git20200523.55506a9-1"
DEB_SHA256 = "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0"
DEB_DIR = "usr/share/datasets/fashion-mnist"
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

FILES: dict[str, IdxFile] = {
    "train_images": IdxFile(
        STEMS["train_images"],
        (60000, 28, 28),
        "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
    ),
    "train_labels": IdxFile(
        STEMS["train_labels"],
        (60000,),
        "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
    ),
    "test_images": IdxFile(
        STEMS["test_images"],
        (10000, 28, 28),
        "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
    ),
    "test_labels": IdxFile(
        STEMS["test_labels"],
        (10000,),
        "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
    ),
}

_HOW_TO = (
    "Provide Fashion-MNIST in one of these ways:\n"
    "  - pass data_dir=DIR to load_fashion_mnist, DIR holding train-images-idx3-ubyte, "
    "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each raw or .gz);\n"
    f"  - set {ENV_FASHION_MNIST_DIR}=DIR (same layout); on Debian/Ubuntu "
    f"`apt-get install {DEB_PACKAGE}` puts the files in /{DEB_DIR};\n"
    f"  - call with download=True on a Debian-based system with apt-get and network access "
    f"(fetches the package {DEB_PACKAGE} {DEB_VERSION} without installing it)."
)

SET = IdxSet("fashion-mnist", "Fashion-MNIST", ENV_FASHION_MNIST_DIR, _HOW_TO, MEAN, STD, CLASSES)


def load_fashion_mnist(
    data_dir: str | Path | None = None, *, download: bool = True, progress: bool = True
) -> Dataset:
    """Fashion-MNIST as (n, 28, 28, 1) float32, normalised as (pixel/255 - 0.2860) / 0.3530."""
    raw = load_fashion_mnist_uint8(data_dir, download=download, progress=progress)
    return gray_dataset(raw, SET)


def load_fashion_mnist_uint8(
    data_dir: str | Path | None = None, *, download: bool = True, progress: bool = True
) -> dict[str, np.ndarray]:
    """The four verified uint8 arrays keyed train_images (60000, 28, 28), train_labels
    (60000,), test_images (10000, 28, 28), test_labels (10000,); same search as the loader."""
    return load_uint8(data_dir, SET, FILES, _fetch_missing, download=download, progress=progress)


def _fetch_missing(cache: Path, keys: list[str], progress: bool) -> None:
    """Copy the .gz files for `keys` out of the Debian package into `cache`."""
    paths = {key: f"{DEB_DIR}/{FILES[key].stem}.gz" for key in keys}
    with tempfile.TemporaryDirectory(prefix="bnn-shift-apt-") as tmp:
        try:
            package = fetch.apt_download(
                DEB_PACKAGE, version=DEB_VERSION, sha256=DEB_SHA256, dest=tmp, progress=progress
            )
            contents = deb.read_deb_files(package, list(paths.values()))
        except (FetchError, ChecksumError, UnsafeArchiveError, OSError) as e:
            raise DataNotFoundError(
                f"could not fetch Fashion-MNIST into {cache}: {e}\n{_HOW_TO}"
            ) from e
    for path in paths.values():
        with atomic_write(cache / Path(path).name) as f:
            f.write(contents[path])
