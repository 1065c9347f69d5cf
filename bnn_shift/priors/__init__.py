"""Priors over model parameters: pure log densities that compose by parameter path."""

from bnn_shift.priors.base import MassFactor, Prior
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

__all__ = [
    "ByPath",
    "EmpCov",
    "ExpNorm",
    "Gaussian",
    "Laplace",
    "MassFactor",
    "Prior",
    "StudentT",
    "SumFilter",
    "Temperature",
    "by_path",
    "empcov_directions",
    "extract_patches",
    "input_covariance",
    "parameter_table",
    "patch_covariance",
    "prior_predictive",
    "std_along_data_directions",
]
