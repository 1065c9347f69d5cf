"""Writing corrupted test sets (MNIST-C / CIFAR-10-C layouts), the manifest, and the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bnn_shift.data import ChecksumError, Dataset, upsample_digits
from bnn_shift.data.cache import file_digest
from bnn_shift.shift import cached_corruption_shifts, load_cifar10_c, load_mnist_c
from bnn_shift.shift import corrupted_sets as cs
from bnn_shift.shift.corruptions import corrupt, corruption_shifts, to_uint8

N_MNIST, N_CIFAR = 24, 6


@pytest.fixture(scope="module")
def mnist_like() -> Dataset:
    """24 scikit-learn digits in MNIST's format and normalisation, named "mnist"."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = upsample_digits(bunch.images[:N_MNIST] / 16.0)[..., None]  # (n, 28, 28, 1)
    raw = np.rint(raw * 255) / 255  # on the uint8 grid, as MNIST is
    x = (raw - 0.1307) / 0.3081
    y = bunch.target[:N_MNIST]
    return Dataset("mnist", x, y, x, y, 10, mean=0.1307, std=0.3081)


@pytest.fixture(scope="module")
def cifar_like() -> Dataset:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (N_CIFAR, 32, 32, 3)) / 255.0
    mean = np.array([0.49, 0.48, 0.44])
    x = (raw - mean) / 0.2
    y = np.arange(N_CIFAR) % 10
    return Dataset("cifar10", x, y, x, y, 10, mean=(0.49, 0.48, 0.44), std=0.2)


@pytest.fixture
def generated(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Records every (corruption, severity) actually generated."""
    calls: list[tuple[str, int]] = []
    original = cs._generate

    def counting(clean01, name, severity, seed, benchmark):
        calls.append((name, severity))
        return original(clean01, name, severity, seed, benchmark)

    monkeypatch.setattr(cs, "_generate", counting)
    return calls


def _expected(ds: Dataset, name: str, severity: int, seed: int, benchmark: str) -> np.ndarray:
    clean01 = np.clip(ds.denormalize(ds.x_test), 0, 1)
    return to_uint8(corrupt(clean01, name, severity, seed, benchmark), benchmark)


def test_mnist_c_round_trip(mnist_like: Dataset, tmp_path: Path) -> None:
    manifest_path = cs.write_corrupted(
        mnist_like, tmp_path, names=["stripe", "translate", "rotate"], seed=4, progress=False
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json",
        "rotate",
        "stripe",
        "translate",
    ]
    images = np.load(tmp_path / "rotate" / "test_images.npy", allow_pickle=False)
    assert images.shape == (N_MNIST, 28, 28, 1) and images.dtype == np.uint8
    labels = np.load(tmp_path / "rotate" / "test_labels.npy", allow_pickle=False)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, mnist_like.y_test)

    manifest = json.loads(manifest_path.read_text())
    assert manifest["seed"] == 4 and manifest["benchmark"] == "mnist-c" and manifest["n"] == N_MNIST
    assert set(manifest["generator"]) == {"package", "version", "code_sha256"}
    for rel, sha in manifest["sha256"].items():
        assert file_digest(tmp_path / rel) == sha

    loaded = load_mnist_c(tmp_path)
    assert loaded.keys == [("rotate", 2), ("translate", 3), ("stripe", 1)]  # published order
    np.testing.assert_array_equal(loaded.labels, mnist_like.y_test)
    for name, severity in loaded.keys:
        np.testing.assert_array_equal(
            loaded.images(name), _expected(mnist_like, name, severity, 4, "mnist-c")
        )


def test_other_severities_and_selection(mnist_like: Dataset, tmp_path: Path) -> None:
    cs.materialise(mnist_like, tmp_path, None, ["translate", "stripe"], [1, 3], progress=False)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        "stripe",  # stripe has only level 1 (its default)
        "translate",  # level 3, the release default
        "translate-s1",
    ]
    assert load_mnist_c(tmp_path).keys == [("translate", 1), ("translate", 3), ("stripe", 1)]
    with pytest.raises(ValueError, match=r"zigzag has severities \(1,\), none of \[3\]"):
        cs.materialise(mnist_like, tmp_path, None, ["zigzag"], [3], progress=False)
    with pytest.raises(ValueError, match="no corruption benchmark"):
        cs.write_corrupted("digits", tmp_path)


def test_resume_and_repair(mnist_like: Dataset, tmp_path: Path, generated: list) -> None:
    names = ["shot_noise", "translate"]
    cs.materialise(mnist_like, tmp_path, None, names, progress=False)
    assert generated == [("shot_noise", 5), ("translate", 3)]
    first = (tmp_path / "shot_noise" / "test_images.npy").read_bytes()
    stamp = (tmp_path / "translate" / "test_images.npy").stat().st_mtime_ns

    cs.materialise(mnist_like, tmp_path, None, names, progress=False)
    assert len(generated) == 2  # nothing regenerated
    assert (tmp_path / "translate" / "test_images.npy").stat().st_mtime_ns == stamp

    damaged = bytearray(first)
    damaged[-1] ^= 0xFF
    (tmp_path / "shot_noise" / "test_images.npy").write_bytes(bytes(damaged))
    with pytest.raises(ChecksumError, match="shot_noise"):
        load_mnist_c(tmp_path).images("shot_noise")
    cs.materialise(mnist_like, tmp_path, None, names, progress=False)
    assert generated[2:] == [("shot_noise", 5)]  # only the damaged set, same bytes again
    assert (tmp_path / "shot_noise" / "test_images.npy").read_bytes() == first

    cs.materialise(mnist_like, tmp_path, None, names, seed=1, progress=False)
    assert generated[3:] == [("shot_noise", 5), ("translate", 3)]  # other seed: all again
    assert (tmp_path / "shot_noise" / "test_images.npy").read_bytes() != first


def test_cifar10_c_layout_fills_in_severities(
    cifar_like: Dataset, tmp_path: Path, generated: list
) -> None:
    names = ["brightness", "gaussian_noise"]
    cs.write_corrupted(cifar_like, tmp_path, names=names, severities=[1, 3], progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "brightness.npy",
        "gaussian_noise.npy",
        "labels.npy",
        "manifest.json",
    ]
    assert np.load(tmp_path / "brightness.npy").shape == (2 * N_CIFAR, 32, 32, 3)
    labels = np.load(tmp_path / "labels.npy")
    np.testing.assert_array_equal(labels, np.tile(cifar_like.y_test, 5))

    cs.write_corrupted(cifar_like, tmp_path, names=names, severities=[3, 5], progress=False)
    assert generated[4:] == [("brightness", 5), ("gaussian_noise", 5)]  # only the new level
    loaded = load_cifar10_c(tmp_path)
    assert loaded.keys == [(n, s) for n in ("gaussian_noise", "brightness") for s in (1, 3, 5)]
    for name, severity in loaded.keys:
        np.testing.assert_array_equal(
            loaded.images(name, severity),
            _expected(cifar_like, name, severity, 0, "cifar10-c"),
        )


def test_cached_shifts(
    mnist_like: Dataset, tmp_path: Path, generated: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BNN_SHIFT_DATA", str(tmp_path))
    shifts = cached_corruption_shifts(
        mnist_like, names=["shot_noise", "rotate"], severities=[1, 2], progress=False
    )
    assert [(s.name, s.severity) for s in shifts] == [
        ("shot_noise", 1),
        ("shot_noise", 2),
        ("rotate", 1),
        ("rotate", 2),
    ]
    (cache,) = (tmp_path / "corrupted").iterdir()
    assert cache.name.startswith("mnist-mnist-c-") and cache.name.endswith("-seed0")
    live = corruption_shifts(mnist_like, "mnist-c", ["shot_noise", "rotate"], [1, 2], 0)
    for cached, fresh in zip(shifts, live, strict=True):
        got = cached.apply(mnist_like.x_test)
        # stored as uint8: at most half a grey level from the live corruption (+ float32 slack)
        half_level = 0.5 / 255 / 0.3081
        np.testing.assert_allclose(got, fresh.apply(mnist_like.x_test), atol=half_level + 1e-6)
        flat = cached.apply(mnist_like.flat("test"))
        np.testing.assert_array_equal(flat, got.reshape(N_MNIST, -1))

    n_generated = len(generated)
    again = cached_corruption_shifts(
        mnist_like, names=["shot_noise", "rotate"], severities=[1, 2], progress=False
    )
    assert len(generated) == n_generated  # the cache was reused

    target = cache / "rotate-s1" / "test_images.npy"
    expected = again[2].apply(mnist_like.x_test)
    np.save(target, np.zeros((N_MNIST, 28, 28, 1), np.uint8))  # damaged after creation
    np.testing.assert_array_equal(again[2].apply(mnist_like.x_test), expected)
    assert generated[n_generated:] == [("rotate", 1)]  # healed on read

    with pytest.raises(ValueError, match="other clean images"):
        again[0].apply(mnist_like.x_test[::-1])
    with pytest.raises(ValueError, match="holds 24 images but got 3"):
        again[0].apply(mnist_like.x_test[:3])


def test_frost_photos_are_part_of_the_cifar_key(
    cifar_like: Dataset, tmp_path: Path, generated: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BNN_SHIFT_FROST_DIR", raising=False)
    assert cs.generator_info("cifar10-c")["frost"] == "procedural"
    assert "frost" not in cs.generator_info("mnist-c")
    out = tmp_path / "c"
    cs.materialise(cifar_like, out, None, ["contrast"], [2], progress=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "frost1.png").write_bytes(b"not really a photo")
    monkeypatch.setenv("BNN_SHIFT_FROST_DIR", str(photos))
    key = cs.generator_info("cifar10-c")["frost"]
    assert key != "procedural"
    cs.materialise(cifar_like, out, None, ["contrast"], [2], progress=False)
    assert generated == [("contrast", 2), ("contrast", 2)]  # other photos: regenerated
    (photos / "frost1.png").write_bytes(b"another photo")
    assert cs.generator_info("cifar10-c")["frost"] != key
