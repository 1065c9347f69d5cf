"""Inference engines (full-batch HMC, MAP) and the `Posterior` they return."""

from bnn_shift.inference.hmc import (
    HMCInfo,
    HMCKernel,
    HMCState,
    build_kernel,
    default_trajectory_length,
    n_leapfrog_steps,
)
from bnn_shift.inference.map import map_fit
from bnn_shift.inference.metric import prior_metric
from bnn_shift.inference.nuts import nuts
from bnn_shift.inference.posterior import Posterior
from bnn_shift.inference.sampler import hmc

__all__ = [
    "HMCInfo",
    "HMCKernel",
    "HMCState",
    "Posterior",
    "build_kernel",
    "default_trajectory_length",
    "hmc",
    "map_fit",
    "n_leapfrog_steps",
    "nuts",
    "prior_metric",
]
