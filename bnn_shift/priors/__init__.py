"""Priors over model parameters: pure log densities that compose by parameter path."""

from bnn_shift.priors.base import MassFactor, Prior
from bnn_shift.priors.compose import ByPath, by_path
from bnn_shift.priors.empcov import EmpCov, input_covariance
from bnn_shift.priors.gaussian import Gaussian
from bnn_shift.priors.temperature import Temperature

__all__ = [
    "ByPath",
    "EmpCov",
    "Gaussian",
    "MassFactor",
    "Prior",
    "Temperature",
    "by_path",
    "input_covariance",
]
