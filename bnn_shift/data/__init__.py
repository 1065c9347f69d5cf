"""Datasets: loaders (digits, MNIST, Fashion-MNIST, CIFAR-10, animal silhouettes), the
`Dataset` container, the IDX format, cache + checksums."""

from bnn_shift.data.animal_mnist import load_animal_mnist, load_animal_mnist_uint8
from bnn_shift.data.cache import data_home
from bnn_shift.data.cifar10 import load_cifar10, load_cifar10_uint8
from bnn_shift.data.dataset import Dataset
from bnn_shift.data.digits import load_digits
from bnn_shift.data.errors import (
    ChecksumError,
    DataNotFoundError,
    FetchError,
    IdxFormatError,
    UnsafeArchiveError,
)
from bnn_shift.data.ett import SeriesData, load_ett
from bnn_shift.data.fashion_mnist import load_fashion_mnist, load_fashion_mnist_uint8
from bnn_shift.data.idx import read_idx, write_idx
from bnn_shift.data.mnist import load_mnist, load_mnist_uint8
from bnn_shift.data.registry import load_dataset
from bnn_shift.data.resample import downsample_to_digits, upsample_digits
from bnn_shift.data.safe_pickle import PickleContentError, load_pickled_arrays
from bnn_shift.data.text import TextData, load_text

__all__ = [
    "ChecksumError",
    "DataNotFoundError",
    "Dataset",
    "FetchError",
    "IdxFormatError",
    "PickleContentError",
    "SeriesData",
    "TextData",
    "UnsafeArchiveError",
    "data_home",
    "downsample_to_digits",
    "load_animal_mnist",
    "load_animal_mnist_uint8",
    "load_cifar10",
    "load_cifar10_uint8",
    "load_dataset",
    "load_digits",
    "load_ett",
    "load_fashion_mnist",
    "load_fashion_mnist_uint8",
    "load_mnist",
    "load_mnist_uint8",
    "load_pickled_arrays",
    "load_text",
    "read_idx",
    "upsample_digits",
    "write_idx",
]
