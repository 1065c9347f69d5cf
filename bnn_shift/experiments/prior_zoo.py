"""The named priors `compare-priors` can fit, built for a model and its training data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bnn_shift.priors import EmpCov, Gaussian, Laplace, Prior, StudentT, SumFilter, by_path


@dataclass(frozen=True)
class FirstLayer:
    """Where a model's first layer lives and how it sees the input."""

    path: str  # dotted parameter path of its weight
    kind: str  # "dense" or "conv"
    kernel_size: int = 0
    padding: int = 0
    stride: int = 1


STUDENT_T_DF = 5.0  # the paper's MNIST setting
SUMFILTER_SCALE = 1 / np.sqrt(15.0)  # prior std of each filter's sum (wd_f = 15)
EMPCOV_WD = 100.0  # product form, as the reference code


def _empcov(first: FirstLayer, x: np.ndarray, scale: float, eps: float, **form) -> EmpCov:
    if first.kind == "dense":
        return EmpCov.from_data(x, scale=scale, eps=eps, **form)
    return EmpCov.from_patches(
        x, first.kernel_size, first.padding, first.stride, scale=scale, eps=eps, **form
    )


def _first_layer(first: FirstLayer, prior: Prior, scale: float) -> Prior:
    return by_path({first.path: prior, "*": Gaussian(scale)})


PriorFactory = Callable[[FirstLayer, np.ndarray, float, float], Prior]

PRIORS: dict[str, PriorFactory] = {
    "gaussian": lambda first, x, scale, eps: Gaussian(scale),
    "laplace": lambda first, x, scale, eps: Laplace(scale),
    "student-t": lambda first, x, scale, eps: StudentT.matched(STUDENT_T_DF, scale),
    "empcov": lambda first, x, scale, eps: _first_layer(
        first, _empcov(first, x, scale, eps), scale
    ),
    "empcov-product": lambda first, x, scale, eps: _first_layer(
        first, _empcov(first, x, scale, eps, form="product", empcov_wd=EMPCOV_WD), scale
    ),
    "sumfilter": lambda first, x, scale, eps: _first_layer(
        first, SumFilter(scale, SUMFILTER_SCALE), scale
    ),
}
PRIORS_DOC = {
    "gaussian": "N(0, scale^2) on every parameter",
    "laplace": "Laplace with std = scale on every parameter",
    "student-t": f"Student-t, df={STUDENT_T_DF:g}, std = scale, on every parameter",
    "empcov": "first layer N(0, alpha*Sigma + eps*I), alpha matched to scale; Gaussian elsewhere",
    "empcov-product": f"first layer precision {EMPCOV_WD:g}*Sigma^-1 + I/scale^2 (reference "
    "code form); Gaussian elsewhere",
    "sumfilter": "Gaussian plus an L1 penalty on each first conv filter's sum (conv models only)",
}


def make_prior(
    name: str, first: FirstLayer, x_train: np.ndarray, scale: float, eps: float
) -> Prior:
    """The named prior for a model whose first layer is `first`, with x_train (n, H, W, C)."""
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; choose from {', '.join(PRIORS)}")
    if name == "sumfilter" and first.kind != "conv":
        raise ValueError("the sumfilter prior needs a conv first layer; use --model lenet")
    return PRIORS[name](first, x_train, scale, eps)
