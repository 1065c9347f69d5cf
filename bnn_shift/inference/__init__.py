"""Inference engines (full-batch HMC, MAP) and the `Posterior` they return."""

from bnn_shift.inference.ensemble import deep_ensemble
from bnn_shift.inference.kernel import (
    HMCInfo,
    HMCKernel,
    HMCState,
    build_kernel,
    default_trajectory_length,
    n_leapfrog_steps,
)
from bnn_shift.inference.likelihood import (
    SEQUENCE_CATEGORICAL,
    Likelihood,
    gaussian_likelihood,
    sequence_gaussian_likelihood,
)
from bnn_shift.inference.map import map_fit
from bnn_shift.inference.metric import prior_metric
from bnn_shift.inference.numpyro_export import (
    EmpCovDistribution,
    module_prior,
    numpyro_model,
    params_to_sites,
    posterior_from_numpyro,
    prior_distributions,
    to_params,
)
from bnn_shift.inference.nuts import nuts
from bnn_shift.inference.posterior import Posterior
from bnn_shift.inference.sampler import hmc
from bnn_shift.inference.sgmcmc import sgld
from bnn_shift.inference.tuning import (
    StabilityCheck,
    StepSizeTuning,
    stable_step_size,
    tune_step_size,
)
from bnn_shift.inference.vi import mfvi

__all__ = [
    "SEQUENCE_CATEGORICAL",
    "EmpCovDistribution",
    "HMCInfo",
    "HMCKernel",
    "HMCState",
    "Likelihood",
    "Posterior",
    "StabilityCheck",
    "StepSizeTuning",
    "build_kernel",
    "deep_ensemble",
    "default_trajectory_length",
    "gaussian_likelihood",
    "hmc",
    "map_fit",
    "mfvi",
    "module_prior",
    "n_leapfrog_steps",
    "numpyro_model",
    "nuts",
    "params_to_sites",
    "posterior_from_numpyro",
    "prior_distributions",
    "prior_metric",
    "sequence_gaussian_likelihood",
    "sgld",
    "stable_step_size",
    "to_params",
    "tune_step_size",
]
