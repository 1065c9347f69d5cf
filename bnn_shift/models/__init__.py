"""Equinox models: a model is a pytree, its float arrays are the HMC position."""

from bnn_shift.models.attention_models import (
    AttentionClassifier,
    CharLM,
    ICLRegressor,
    SeriesForecaster,
    icl_points,
)
from bnn_shift.models.first_layer import FirstLayer
from bnn_shift.models.lenet import LeNet5, lenet5_cifar, lenet5_mnist
from bnn_shift.models.mlp import MLP, paper_mlp
from bnn_shift.models.params import combine_params, param_paths, partition_params
from bnn_shift.models.resnet import FRN, ResNet20FRN, resnet20_frn_cifar, resnet20_frn_mnist
from bnn_shift.models.transformer import Transformer, forward_flops_per_token

__all__ = [
    "FRN",
    "MLP",
    "AttentionClassifier",
    "CharLM",
    "FirstLayer",
    "ICLRegressor",
    "LeNet5",
    "ResNet20FRN",
    "SeriesForecaster",
    "Transformer",
    "combine_params",
    "forward_flops_per_token",
    "icl_points",
    "lenet5_cifar",
    "lenet5_mnist",
    "paper_mlp",
    "param_paths",
    "partition_params",
    "resnet20_frn_cifar",
    "resnet20_frn_mnist",
]
