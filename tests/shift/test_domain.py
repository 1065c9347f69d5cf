"""Domain-shift and far-OOD pairs: formats, the source's normalisation, label spaces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bnn_shift.data import load_digits
from bnn_shift.data.mnist import MEAN as MNIST_MEAN
from bnn_shift.data.mnist import STD as MNIST_STD
from bnn_shift.data.mnist import local_mnist_dir
from bnn_shift.shift import DOMAIN_PAIRS, domain, domain_shift

_SHARED_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
# the shared copy, else $BNN_SHIFT_MNIST_DIR or what load_mnist fetched into its cache
MNIST_DIR = local_mnist_dir(_SHARED_MNIST) or _SHARED_MNIST


def test_pairs_document_label_spaces() -> None:
    assert DOMAIN_PAIRS == {
        ("mnist", "digits"): True,
        ("digits", "mnist"): True,
        ("mnist", "fashion-mnist"): False,
        ("mnist", "animal-mnist"): False,
    }


def test_mnist_to_digits() -> None:
    from sklearn.datasets import load_digits as sk_digits

    d = domain_shift("mnist", "digits")
    assert d.name == "mnist->digits" and d.in_label_space
    assert d.x.shape == (1797, 28, 28, 1) and d.x.dtype == np.float32
    np.testing.assert_array_equal(d.y, sk_digits().target)
    raw01 = d.x * MNIST_STD + MNIST_MEAN  # undo MNIST's normalisation
    assert raw01.min() >= -1e-6 and raw01.max() <= 1 + 1e-6
    img = raw01[..., 0].astype(np.float64)
    grid = np.arange(28)
    rows = img.sum(2) @ grid / img.sum((1, 2))  # (n,) centre-of-mass row, as MNIST centres
    assert abs(np.median(rows) - 13.5) <= 0.5
    # as bright overall as MNIST-style digits should be: ink fraction like MNIST's ~0.13
    assert 0.05 < float(raw01.mean()) < 0.3


@pytest.mark.skipif(local_mnist_dir(MNIST_DIR) is None, reason="no MNIST")
def test_digits_to_mnist_uses_the_source_dataset() -> None:
    source = load_digits(seed=3)
    d = domain_shift(source, "mnist", data_dir=MNIST_DIR, progress=False)
    assert d.name == "digits->mnist" and d.in_label_space
    assert d.x.shape == (10000, 8, 8, 1) and len(d.y) == 10000
    raw01 = source.denormalize(d.x)
    # the digits source sees sixteenths in [0, 1], like its own training inputs
    np.testing.assert_allclose(raw01 * 16, np.rint(raw01 * 16), atol=1e-4)
    assert raw01.min() >= -1e-5 and raw01.max() <= 1 + 1e-5
    by_name = domain_shift("digits", "mnist", data_dir=MNIST_DIR, seed=3, progress=False)
    np.testing.assert_allclose(by_name.x, d.x, rtol=1e-6)


@pytest.mark.parametrize(
    "target, loader, classes",
    [
        ("fashion-mnist", "load_fashion_mnist_uint8", ("T-shirt/top", "Ankle boot")),
        ("animal-mnist", "load_animal_mnist_uint8", ("bear", "zebra")),
    ],
)
def test_far_ood_targets(
    target: str, loader: str, classes: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    images = np.zeros((4, 28, 28), np.uint8)
    images[:, 10:18, 10:18] = 255
    labels = np.array([0, 9, 9, 1], np.uint8)
    fake = {"test_images": images, "test_labels": labels, "images": images, "labels": labels}
    asked: list[object] = []

    def fake_loader(data_dir, download, progress):
        asked.append(data_dir)
        return fake

    monkeypatch.setattr(domain, loader, fake_loader)
    d = domain_shift("mnist", target, data_dir="somewhere")
    assert asked == ["somewhere"] and not d.in_label_space
    assert (d.classes[0], d.classes[-1]) == classes
    np.testing.assert_array_equal(d.y, labels)
    np.testing.assert_allclose(d.x[0, 12, 12, 0], (1.0 - MNIST_MEAN) / MNIST_STD, rtol=1e-6)
    np.testing.assert_allclose(d.x[0, 0, 0, 0], -MNIST_MEAN / MNIST_STD, rtol=1e-6)


def test_bad_pairs() -> None:
    with pytest.raises(ValueError, match=r"no domain pair digits->fashion-mnist; valid pairs"):
        domain_shift("digits", "fashion-mnist")
    with pytest.raises(ValueError, match="cifar10->digits"):
        domain_shift("cifar10", "digits")
    wrong = load_digits()  # a digits Dataset presented as the MNIST source
    object.__setattr__(wrong, "name", "mnist")
    with pytest.raises(ValueError, match=r"images \(8, 8, 1\), expected \(28, 28, 1\)"):
        domain_shift(wrong, "digits")
