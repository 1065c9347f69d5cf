"""Datasets: loaders (digits, MNIST), the `Dataset` container, the IDX format, cache + checksums."""

from bnn_shift.data.cache import data_home
from bnn_shift.data.dataset import Dataset
from bnn_shift.data.digits import load_digits
from bnn_shift.data.errors import (
    ChecksumError,
    DataNotFoundError,
    FetchError,
    IdxFormatError,
    UnsafeArchiveError,
)
from bnn_shift.data.idx import read_idx, write_idx
from bnn_shift.data.mnist import load_mnist, load_mnist_uint8
from bnn_shift.data.registry import load_dataset

__all__ = [
    "ChecksumError",
    "DataNotFoundError",
    "Dataset",
    "FetchError",
    "IdxFormatError",
    "UnsafeArchiveError",
    "data_home",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "load_mnist_uint8",
    "read_idx",
    "write_idx",
]
