"""Domain shift and far-OOD sets: another dataset's test images, seen as the source expects.

A model trained on the source sees inputs in the source's image format and normalisation; each
pair below converts the target's test images to that format (resizing between scikit-learn's
8x8 digits and MNIST's 28x28) and applies the SOURCE's normalisation.

| pair | kind | target images |
|---|---|---|
| mnist -> digits | in label space (digits 0-9) | all 1,797 digits, upsampled to 28x28 |
| digits -> mnist | in label space | the 10,000 MNIST test images, reduced to 8x8 sixteenths |
| mnist -> fashion-mnist | far OOD (clothes) | the 10,000 Fashion-MNIST test images |
| mnist -> animal-mnist | far OOD (animal silhouettes) | all 10,000 silhouettes |

For in-label-space pairs the labels are comparable with the model's classes, so accuracy, NLL
and calibration apply. For OOD pairs they name the target's own classes and are returned only
for bookkeeping: score those sets by how well predictive uncertainty separates them from the
source's test set (AUROC/AUPR of entropy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnn_shift.data import Dataset, resample
from bnn_shift.data.animal_mnist import CLASSES as ANIMAL_CLASSES
from bnn_shift.data.animal_mnist import load_animal_mnist_uint8
from bnn_shift.data.fashion_mnist import CLASSES as FASHION_CLASSES
from bnn_shift.data.fashion_mnist import load_fashion_mnist_uint8
from bnn_shift.data.mnist import load_mnist_uint8

__all__ = ["DOMAIN_PAIRS", "DomainShift", "domain_shift"]

DIGIT_CLASSES = tuple(str(i) for i in range(10))

# (source, target) -> True when the target's labels live in the source's label space
DOMAIN_PAIRS: dict[tuple[str, str], bool] = {
    ("mnist", "digits"): True,
    ("digits", "mnist"): True,
    ("mnist", "fashion-mnist"): False,
    ("mnist", "animal-mnist"): False,
}


@dataclass(frozen=True)
class DomainShift:
    """Target test images in the source's format and normalisation, with the target labels."""

    source: str
    target: str
    x: np.ndarray  # (n, H, W, C) float32, normalised like the source
    y: np.ndarray  # (n,) int32 target labels
    in_label_space: bool  # False: far OOD, labels are not the source's classes
    classes: tuple[str, ...]  # names of the target labels

    @property
    def name(self) -> str:
        return f"{self.source}->{self.target}"


# target -> loader(data_dir, download, progress) -> ((n, H, W) images in [0, 1], labels, classes)
_Target = Callable[[str | Path | None, bool, bool], tuple[np.ndarray, np.ndarray, tuple]]


def _digits(data_dir: str | Path | None, download: bool, progress: bool):
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    return bunch.images / 16.0, bunch.target, DIGIT_CLASSES  # (1797, 8, 8) in [0, 1]


def _mnist(data_dir, download, progress):
    raw = load_mnist_uint8(data_dir, download=download, progress=progress)
    return raw["test_images"] / 255.0, raw["test_labels"], DIGIT_CLASSES


def _fashion(data_dir, download, progress):
    raw = load_fashion_mnist_uint8(data_dir, download=download, progress=progress)
    return raw["test_images"] / 255.0, raw["test_labels"], FASHION_CLASSES


def _animals(data_dir, download, progress):
    raw = load_animal_mnist_uint8(data_dir, download=download, progress=progress)
    return raw["images"] / 255.0, raw["labels"], ANIMAL_CLASSES


_TARGETS: dict[str, _Target] = {
    "digits": _digits,
    "mnist": _mnist,
    "fashion-mnist": _fashion,
    "animal-mnist": _animals,
}
# source -> image side length of its inputs
_SIDE = {"mnist": 28, "digits": 8}


def _source_normaliser(source: Dataset | str, seed: int) -> tuple[str, Callable]:
    """The source's name and its raw01 (..., C) -> model-input map."""
    if isinstance(source, Dataset):
        return source.name, source.normalize
    name = str(source).lower()
    if name == "mnist":
        from bnn_shift.data.mnist import MEAN, STD

        return name, lambda raw01: (raw01 - np.float32(MEAN)) / np.float32(STD)
    if name == "digits":
        from bnn_shift.data import load_digits

        return name, load_digits(seed=seed).normalize
    return name, None  # rejected below with the list of pairs


def domain_shift(
    source: Dataset | str,
    target: str,
    *,
    data_dir: str | Path | None = None,
    seed: int = 0,
    download: bool = True,
    progress: bool = True,
) -> DomainShift:
    """The target's test images as a model trained on `source` expects them.

    `source` is the training Dataset (its normalisation is used) or its name ("mnist",
    "digits"; a name "digits" uses `load_digits(seed=seed)`'s normalisation). `target` is one
    of the pairs in DOMAIN_PAIRS; `data_dir` is passed to the target's loader.
    """
    name, normalize = _source_normaliser(source, seed)
    pair = (name, str(target).lower())
    if pair not in DOMAIN_PAIRS or normalize is None:
        valid = ", ".join(f"{s}->{t}" for s, t in DOMAIN_PAIRS)
        raise ValueError(f"no domain pair {pair[0]}->{pair[1]}; valid pairs: {valid}")
    if isinstance(source, Dataset) and source.image_shape != (_SIDE[name], _SIDE[name], 1):
        raise ValueError(
            f"source dataset {name!r} has images {source.image_shape}, "
            f"expected {(_SIDE[name], _SIDE[name], 1)}"
        )
    images, labels, classes = _TARGETS[pair[1]](data_dir, download, progress)
    images = np.asarray(images, np.float32)  # (n, h, w) in [0, 1]
    if _SIDE[name] == 8 and images.shape[1] != 8:
        images = resample.downsample_to_digits(images)
    elif _SIDE[name] == 28 and images.shape[1] != 28:
        images = resample.upsample_digits(images)
    x = np.asarray(normalize(images[..., None]), np.float32)  # (n, side, side, 1)
    return DomainShift(
        source=name,
        target=pair[1],
        x=x,
        y=np.asarray(labels, np.int32),
        in_label_space=DOMAIN_PAIRS[pair],
        classes=tuple(classes),
    )
