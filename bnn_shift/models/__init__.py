"""Equinox models: a model is a pytree, its float arrays are the HMC position."""

from bnn_shift.models.lenet import LeNet5, PatchSpec, lenet5_cifar, lenet5_mnist
from bnn_shift.models.mlp import MLP, paper_mlp
from bnn_shift.models.params import combine_params, param_paths, partition_params

__all__ = [
    "MLP",
    "LeNet5",
    "PatchSpec",
    "combine_params",
    "lenet5_cifar",
    "lenet5_mnist",
    "paper_mlp",
    "param_paths",
    "partition_params",
]
