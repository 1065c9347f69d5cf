"""Priors over model parameters: pure log densities that compose by parameter path, and the
named priors of `PRIORS` built for a model and its data."""

from bnn_shift.priors.base import MassFactor, Part, Prior
from bnn_shift.priors.compose import ByPath, by_path
from bnn_shift.priors.empcov import EmpCov, input_covariance
from bnn_shift.priors.expnorm import ExpNorm
from bnn_shift.priors.gaussian import Gaussian
from bnn_shift.priors.laplace import Laplace
from bnn_shift.priors.patches import extract_patches, patch_covariance
from bnn_shift.priors.predictive import (
    empcov_directions,
    parameter_table,
    prior_predictive,
    std_along_data_directions,
)
from bnn_shift.priors.student_t import StudentT
from bnn_shift.priors.sumfilter import SumFilter
from bnn_shift.priors.temperature import Temperature
from bnn_shift.priors.zoo import PRIORS, NamedPrior, make_prior

__all__ = [
    "PRIORS",
    "ByPath",
    "EmpCov",
    "ExpNorm",
    "Gaussian",
    "Laplace",
    "MassFactor",
    "NamedPrior",
    "Part",
    "Prior",
    "StudentT",
    "SumFilter",
    "Temperature",
    "by_path",
    "empcov_directions",
    "extract_patches",
    "input_covariance",
    "make_prior",
    "parameter_table",
    "patch_covariance",
    "prior_predictive",
    "std_along_data_directions",
]
