"""Fashion-MNIST: a user directory, the cache, and the Debian-package fetch (stand-in apt-get)."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from debtools import deb_bytes, fake_command

from bnn_shift.data import (
    ChecksumError,
    DataNotFoundError,
    load_dataset,
    load_fashion_mnist,
    load_fashion_mnist_uint8,
    write_idx,
)
from bnn_shift.data import fashion_mnist as fm
from bnn_shift.data.cache import array_digest
from bnn_shift.data.idx_sets import IdxFile

N_TRAIN, N_TEST = 20, 10


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """Small stand-in arrays; FILES is pointed at their checksums."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(N_TEST)[::-1] % 10).astype(np.uint8),
    }
    files = {k: IdxFile(fm.FILES[k].stem, a.shape, array_digest(a)) for k, a in arrays.items()}
    monkeypatch.setattr(fm, "FILES", files)
    monkeypatch.delenv(fm.ENV_FASHION_MNIST_DIR, raising=False)
    return arrays


def _write_dir(directory: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i, (key, arr) in enumerate(arrays.items()):
        suffix = ".gz" if gz and i % 2 == 0 else ""  # mix gzipped and raw files
        write_idx(directory / f"{fm.FILES[key].stem}{suffix}", arr)
    return directory


def test_load_from_dir(small: dict[str, np.ndarray], tmp_path: Path) -> None:
    ds = load_fashion_mnist(_write_dir(tmp_path / "fm", small))
    assert ds.name == "fashion-mnist" and ds.classes == fm.CLASSES and ds.n_classes == 10
    assert ds.x_train.shape == (N_TRAIN, 28, 28, 1) and ds.x_test.dtype == np.float32
    expect = (small["test_images"].astype(np.float32) / 255 - 0.2860) / 0.3530
    np.testing.assert_allclose(ds.x_test[..., 0], expect, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_train, small["train_labels"])
    # float32 round trip: |error| <= a few ulp of 255
    np.testing.assert_allclose(
        ds.denormalize(ds.x_train)[..., 0] * 255, small["train_images"], rtol=0, atol=1e-3
    )
    assert load_dataset("fashion-mnist", data_dir=tmp_path / "fm").name == "fashion-mnist"


def test_env_dir_and_bad_files(
    small: dict[str, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _write_dir(tmp_path / "fm", small, gz=False)
    monkeypatch.setenv(fm.ENV_FASHION_MNIST_DIR, str(d))
    np.testing.assert_array_equal(load_fashion_mnist_uint8()["test_labels"], small["test_labels"])
    write_idx(d / "t10k-labels-idx1-ubyte", np.zeros(N_TEST, np.uint8))
    with pytest.raises(ChecksumError, match=r"Fashion-MNIST file .*t10k-labels-idx1-ubyte"):
        load_fashion_mnist()
    (d / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataNotFoundError, match=r"BNN_SHIFT_FASHION_MNIST_DIR .* lacks"):
        load_fashion_mnist()


def test_not_found_names_the_options(small: dict[str, np.ndarray]) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist(download=False)
    for hint in ("data_dir=", fm.ENV_FASHION_MNIST_DIR, "apt-get", fm.DEB_PACKAGE):
        assert hint in str(info.value)


@pytest.fixture
def fake_apt(small: dict[str, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An apt-get on PATH that 'downloads' a .deb holding the small arrays; returns its log."""
    files = {
        f"./{fm.DEB_DIR}/{fm.FILES[k].stem}.gz": gzip.compress(_idx_bytes(a))
        for k, a in small.items()
    }
    files["./usr/share/doc/dataset-fashion-mnist/copyright"] = b"MIT"
    deb = tmp_path / "pool" / f"{fm.DEB_PACKAGE}_{fm.DEB_VERSION}_all.deb"
    deb.parent.mkdir()
    deb.write_bytes(deb_bytes(files))
    monkeypatch.setattr(fm, "DEB_SHA256", hashlib.sha256(deb.read_bytes()).hexdigest())
    log = tmp_path / "apt.log"
    fake_command(tmp_path / "bin", "apt-get", f'echo "$@" >> "{log}"\ncp "{deb}" .\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return log


def _idx_bytes(arr: np.ndarray) -> bytes:
    from bnn_shift.data.idx import encode_idx

    return encode_idx(arr)


@pytest.mark.skipif(os.name != "posix", reason="stand-in apt-get is a shell script")
def test_fetch_from_package_then_cache(
    fake_apt: Path, small: dict[str, np.ndarray], isolated_data_env: Path
) -> None:
    ds = load_fashion_mnist(progress=False)
    np.testing.assert_array_equal(ds.y_test, small["test_labels"])
    cache = isolated_data_env / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        f"{f.stem}.gz" for f in fm.FILES.values()
    )
    assert fake_apt.read_text() == f"download {fm.DEB_PACKAGE}={fm.DEB_VERSION}\n"
    load_fashion_mnist(progress=False)
    assert len(fake_apt.read_text().splitlines()) == 1  # served by the cache
    # a damaged cache file is deleted and fetched again
    gz = cache / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:50])
    np.testing.assert_array_equal(
        load_fashion_mnist_uint8(progress=False)["train_images"], small["train_images"]
    )
    assert len(fake_apt.read_text().splitlines()) == 2


@pytest.mark.skipif(os.name != "posix", reason="stand-in apt-get is a shell script")
def test_package_with_wrong_sha256(fake_apt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "DEB_SHA256", "0" * 64)
    with pytest.raises(DataNotFoundError, match=r"(?s)sha256.*data_dir="):
        load_fashion_mnist(progress=False)


def test_no_apt_get(small: dict[str, np.ndarray], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=r"(?s)apt-get is not on PATH.*data_dir=DIR"):
        load_fashion_mnist(progress=False)


@pytest.mark.network
@pytest.mark.timeout(900)
def test_real_debian_package(isolated_data_env: Path) -> None:
    """The real package: REFERENCE.md's first labels and the balanced official split."""
    try:
        raw = load_fashion_mnist_uint8(progress=False)
    except DataNotFoundError as e:
        pytest.skip(f"apt-get download unavailable here: {str(e).splitlines()[0]}")
    assert raw["train_labels"][:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert raw["test_labels"][:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert np.bincount(raw["train_labels"]).tolist() == [6000] * 10
    assert np.bincount(raw["test_labels"]).tolist() == [1000] * 10
    x = raw["train_images"].astype(np.float64) / 255
    assert abs(x.mean() - fm.MEAN) < 5e-5 and abs(x.std() - fm.STD) < 5e-5
