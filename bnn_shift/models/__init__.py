"""Equinox models: a model is a pytree, its float arrays are the HMC position."""

from bnn_shift.models.mlp import MLP, paper_mlp
from bnn_shift.models.params import combine_params, param_paths, partition_params

__all__ = ["MLP", "combine_params", "paper_mlp", "param_paths", "partition_params"]
