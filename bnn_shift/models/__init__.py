"""Equinox models: a model is a pytree, its float arrays are the HMC position."""

from bnn_shift.models.lenet import LeNet5, PatchSpec, lenet5_cifar, lenet5_mnist
from bnn_shift.models.mlp import MLP, paper_mlp
from bnn_shift.models.params import combine_params, param_paths, partition_params
from bnn_shift.models.resnet import FRN, ResNet20FRN, resnet20_frn_cifar, resnet20_frn_mnist

__all__ = [
    "FRN",
    "MLP",
    "LeNet5",
    "PatchSpec",
    "ResNet20FRN",
    "combine_params",
    "lenet5_cifar",
    "lenet5_mnist",
    "paper_mlp",
    "param_paths",
    "partition_params",
    "resnet20_frn_cifar",
    "resnet20_frn_mnist",
]
