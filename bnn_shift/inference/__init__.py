"""Inference engines as (init, step) transforms over one `Target`, their drivers, `Posterior`."""

from bnn_shift.inference.chains import FullBatchSampler, run_chains
from bnn_shift.inference.ensemble import deep_ensemble
from bnn_shift.inference.kernel import (
    HMC,
    HMCInfo,
    HMCState,
    default_trajectory_length,
    n_leapfrog_steps,
)
from bnn_shift.inference.laplace import (
    LaplaceApprox,
    LaplacePrediction,
    PriorScaleFit,
    fit_laplace,
    laplace,
    laplace_predict,
    log_marginal_likelihood,
    tune_prior_scale,
)
from bnn_shift.inference.likelihood import (
    CATEGORICAL,
    SEQUENCE_CATEGORICAL,
    Likelihood,
    gaussian_likelihood,
    sequence_gaussian_likelihood,
)
from bnn_shift.inference.mala import MALA, MALAInfo, MALAState, mala
from bnn_shift.inference.map import MAP, MAPInfo, MAPState, map_fit
from bnn_shift.inference.mclmc import (
    MCLMC,
    AdjustedMCLMC,
    AdjustedMCLMCInfo,
    MCLMCInfo,
    MCLMCState,
    adjusted_mclmc,
    mclmc,
)
from bnn_shift.inference.metric import prior_metric
from bnn_shift.inference.mile import mile
from bnn_shift.inference.minibatch import EpochEngine, prepare_epochs, run_epochs
from bnn_shift.inference.numpyro_export import (
    EmpCovDistribution,
    module_prior,
    numpyro_model,
    params_to_sites,
    posterior_from_numpyro,
    prior_distributions,
    to_params,
)
from bnn_shift.inference.nuts import NUTS, NUTSInfo, NUTSState, nuts
from bnn_shift.inference.posterior import Posterior
from bnn_shift.inference.sampler import hmc, prepare_chains, sample_chains
from bnn_shift.inference.sgmcmc import SGMCMC, SGMCMCInfo, SGMCMCState, sgld
from bnn_shift.inference.swag import SWAG, SWAGInfo, SWAGState, swag
from bnn_shift.inference.target import Target
from bnn_shift.inference.tuning import (
    StabilityCheck,
    StepSizeTuning,
    stable_step_size,
    tune_step_size,
)
from bnn_shift.inference.vi import MFVI, MFVIInfo, MFVIState, mfvi

__all__ = [
    "CATEGORICAL",
    "HMC",
    "MALA",
    "MAP",
    "MCLMC",
    "MFVI",
    "NUTS",
    "SEQUENCE_CATEGORICAL",
    "SGMCMC",
    "SWAG",
    "AdjustedMCLMC",
    "AdjustedMCLMCInfo",
    "EmpCovDistribution",
    "EpochEngine",
    "FullBatchSampler",
    "HMCInfo",
    "HMCState",
    "LaplaceApprox",
    "LaplacePrediction",
    "Likelihood",
    "MALAInfo",
    "MALAState",
    "MAPInfo",
    "MAPState",
    "MCLMCInfo",
    "MCLMCState",
    "MFVIInfo",
    "MFVIState",
    "NUTSInfo",
    "NUTSState",
    "Posterior",
    "PriorScaleFit",
    "SGMCMCInfo",
    "SGMCMCState",
    "SWAGInfo",
    "SWAGState",
    "StabilityCheck",
    "StepSizeTuning",
    "Target",
    "adjusted_mclmc",
    "deep_ensemble",
    "default_trajectory_length",
    "fit_laplace",
    "gaussian_likelihood",
    "hmc",
    "laplace",
    "laplace_predict",
    "log_marginal_likelihood",
    "mala",
    "map_fit",
    "mclmc",
    "mfvi",
    "mile",
    "module_prior",
    "n_leapfrog_steps",
    "numpyro_model",
    "nuts",
    "params_to_sites",
    "posterior_from_numpyro",
    "prepare_chains",
    "prepare_epochs",
    "prior_distributions",
    "prior_metric",
    "run_chains",
    "run_epochs",
    "sample_chains",
    "sequence_gaussian_likelihood",
    "sgld",
    "stable_step_size",
    "swag",
    "to_params",
    "tune_prior_scale",
    "tune_step_size",
]
