"""Reading official MNIST-C / CIFAR-10-C directories (no manifest) into Shifts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bnn_shift.data import DataNotFoundError, Dataset
from bnn_shift.shift import load_cifar10_c, load_corrupted, load_mnist_c
from bnn_shift.shift.corrupted_layouts import to_uint8

N = 5


def _mnist_dir(root: Path, name: str, images: np.ndarray, labels: np.ndarray) -> None:
    (root / name).mkdir(parents=True)
    np.save(root / name / "test_images.npy", images)
    np.save(root / name / "test_labels.npy", labels)


@pytest.fixture
def official_mnist_c(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """identity/, shot_noise/ and translate/ as the release lays them out."""
    labels = np.array([7, 2, 1, 0, 4], np.uint8)
    for value, name in enumerate(["identity", "shot_noise", "translate"]):
        images = np.full((N, 28, 28, 1), 10 * value, np.uint8)
        _mnist_dir(tmp_path, name, images, labels)
    return tmp_path, labels


def test_official_mnist_c(official_mnist_c: tuple[Path, np.ndarray]) -> None:
    root, labels = official_mnist_c
    cset = load_mnist_c(root)
    assert cset.benchmark == "mnist-c" and cset.manifest is None
    # the release's severity per corruption and its order: identity (the clean set) first
    assert cset.keys == [("identity", 1), ("shot_noise", 5), ("translate", 3)]
    np.testing.assert_array_equal(cset.labels, labels)
    assert (cset.images("translate") == 20).all()
    assert load_corrupted(root).keys == cset.keys  # layout detected from the files

    mnist = Dataset("mnist", np.zeros((N, 28, 28, 1)), labels, np.zeros((N, 28, 28, 1)), labels, 10,
                    mean=0.1307, std=0.3081)  # fmt: skip
    shifts = {(s.name, s.severity): s for s in cset.shifts(mnist)}
    out = shifts[("shot_noise", 5)].apply(mnist.x_test)
    np.testing.assert_allclose(out, (10 / 255 - 0.1307) / 0.3081, rtol=1e-6)
    with pytest.raises(ValueError, match="holds 5 images but got 2"):
        shifts[("shot_noise", 5)].apply(mnist.x_test[:2])


def test_official_mnist_c_variants(tmp_path: Path) -> None:
    labels = np.arange(N, dtype=np.int64)
    # 3-D float images holding 0..255 (some re-exports) are accepted and rounded
    _mnist_dir(tmp_path, "stripe", np.full((N, 28, 28), 254.6, np.float32), labels)
    cset = load_mnist_c(tmp_path)
    assert cset.images("stripe").shape == (N, 28, 28, 1)
    assert cset.images("stripe").dtype == np.uint8 and (cset.images("stripe") == 255).all()
    _mnist_dir(tmp_path, "zigzag", np.zeros((N, 28, 28, 1), np.uint8), labels[::-1])
    with pytest.raises(ValueError, match="differs from the other"):
        load_mnist_c(tmp_path)
    with pytest.raises(KeyError, match="no 'fog'"):
        cset.images("fog")


def test_official_cifar10_c(tmp_path: Path) -> None:
    labels = np.array([3, 8, 8, 0, 6], np.uint8)
    np.save(tmp_path / "labels.npy", np.tile(labels, 5))
    blocks = np.repeat(np.arange(5, dtype=np.uint8) * 40, N)  # severity s holds 40 * (s - 1)
    np.save(tmp_path / "fog.npy", np.broadcast_to(blocks[:, None, None, None], (5 * N, 32, 32, 3)))
    np.save(tmp_path / "frost.npy", np.zeros((5 * N, 32, 32, 3), np.uint8))
    cset = load_cifar10_c(tmp_path)
    assert cset.keys == [(n, s) for n in ("frost", "fog") for s in range(1, 6)]
    np.testing.assert_array_equal(cset.labels, labels)
    for severity in range(1, 6):
        assert (cset.images("fog", severity) == 40 * (severity - 1)).all()
    with pytest.raises(ValueError, match="pass severity="):
        cset.images("fog")
    assert load_corrupted(tmp_path).keys == cset.keys

    np.save(tmp_path / "snow.npy", np.zeros((4 * N, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"snow\.npy has 20 images, expected 5 severities x 5"):
        load_cifar10_c(tmp_path)
    np.save(tmp_path / "labels.npy", np.arange(5 * N))
    with pytest.raises(ValueError, match="not the test labels repeated 5 times"):
        load_cifar10_c(tmp_path)


def test_missing_directories(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_mnist_c(tmp_path / "nope")
    with pytest.raises(DataNotFoundError, match="MNIST-C layout"):
        load_mnist_c(tmp_path)
    with pytest.raises(DataNotFoundError, match="CIFAR-10-C layout"):
        load_cifar10_c(tmp_path)


def test_unknown_mnist_c_directories_get_severity_0(tmp_path: Path) -> None:
    labels = np.arange(N, dtype=np.uint8)
    for name in ("quantize", "translate"):  # quantize: in ALL_CORRUPTIONS, not generated here
        _mnist_dir(tmp_path, name, np.zeros((N, 28, 28, 1), np.uint8), labels)
    assert load_mnist_c(tmp_path).keys == [("translate", 3), ("quantize", 0)]


def test_to_uint8_stores_each_dataset_as_its_release() -> None:
    # CIFAR-10-C: np.uint8(x * 255) truncates; MNIST-C's notebook rounds; clean images round
    x = np.array([[0.0, 12.5, 12.49, 254.9, 255.0]]) / 255
    assert to_uint8(x, "cifar10-c").tolist() == [[0, 12, 12, 254, 255]]
    assert to_uint8(x, "mnist-c").tolist() == [[0, 12, 12, 255, 255]]  # 12.5: to even
    assert to_uint8(x).tolist() == [[0, 12, 12, 255, 255]]
    on_grid = np.arange(256, dtype=np.float32) / np.float32(255)
    for benchmark in ("cifar10-c", "mnist-c", None):  # exact levels never move
        np.testing.assert_array_equal(to_uint8(on_grid, benchmark), np.arange(256))
