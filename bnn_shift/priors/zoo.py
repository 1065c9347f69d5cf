"""Named priors, built for a model and its training data: one registry, `PRIORS`.

Data priors (EmpCov, SumFilter) go on the model's first layer, which the model names as its
`first_layer` property (`bnn_shift.models.FirstLayer`); every other parameter gets the Gaussian.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bnn_shift.models.first_layer import FirstLayer
from bnn_shift.priors.base import Prior
from bnn_shift.priors.compose import by_path
from bnn_shift.priors.empcov import EmpCov
from bnn_shift.priors.gaussian import Gaussian
from bnn_shift.priors.laplace import Laplace
from bnn_shift.priors.student_t import StudentT
from bnn_shift.priors.sumfilter import SumFilter
from bnn_shift.typing import PyTree

STUDENT_T_DF = 5.0  # the paper's MNIST setting
SUMFILTER_SCALE = 1 / np.sqrt(15.0)  # prior std of each filter's sum (wd_f = 15)
EMPCOV_WD = 100.0  # product form, as the reference code


@dataclass(frozen=True)
class NamedPrior:
    """A registry entry: how to build the prior and one line about it.

    `build(model, x_train, scale, eps)` gets the model (data priors read its `first_layer`),
    the training inputs (n, ...) as the model sees them, the Gaussian std every other prior is
    matched to, and EmpCov's variance along directions the inputs never vary in.
    """

    build: Callable[[PyTree, np.ndarray, float, float], Prior]
    doc: str


def first_layer_of(model: PyTree, prior: str) -> FirstLayer:
    """The model's `first_layer`; a clear error when it names none."""
    first = getattr(model, "first_layer", None)
    if not isinstance(first, FirstLayer):
        raise ValueError(
            f"the {prior} prior goes on the model's first layer, but {type(model).__name__} has "
            "no first_layer property (a bnn_shift.models.FirstLayer); pass a Prior instead"
        )
    return first


def _on_first_layer(first: FirstLayer, prior: Prior, scale: float) -> Prior:
    return by_path({first.path: prior, "*": Gaussian(scale)})


def _empcov(model: PyTree, x: np.ndarray, scale: float, eps: float, **form) -> Prior:
    first = first_layer_of(model, "empcov")
    if first.kind == "dense":
        empcov = EmpCov.from_data(x, scale=scale, eps=eps, **form)
    elif first.kind == "conv":
        empcov = EmpCov.from_patches(
            x, first.kernel_size, first.padding, first.stride, scale=scale, eps=eps, **form
        )
    else:
        raise ValueError(
            f"the empcov priors need a dense or conv first layer; {first.path} is {first.kind}"
        )
    return _on_first_layer(first, empcov, scale)


def _sumfilter(model: PyTree, scale: float) -> Prior:
    first = first_layer_of(model, "sumfilter")
    if first.kind != "conv":
        raise ValueError("the sumfilter prior needs a conv first layer; use --model lenet")
    return _on_first_layer(first, SumFilter(scale, SUMFILTER_SCALE), scale)


PRIORS: dict[str, NamedPrior] = {
    "gaussian": NamedPrior(
        lambda model, x, scale, eps: Gaussian(scale), "N(0, scale^2) on every parameter"
    ),
    "laplace": NamedPrior(
        lambda model, x, scale, eps: Laplace(scale),
        "Laplace with std = scale on every parameter",
    ),
    "student-t": NamedPrior(
        lambda model, x, scale, eps: StudentT.matched(STUDENT_T_DF, scale),
        f"Student-t, df={STUDENT_T_DF:g}, std = scale, on every parameter",
    ),
    "empcov": NamedPrior(
        lambda model, x, scale, eps: _empcov(model, x, scale, eps),
        "first layer N(0, alpha*Sigma + eps*I), alpha matched to scale; Gaussian elsewhere",
    ),
    "empcov-product": NamedPrior(
        lambda model, x, scale, eps: _empcov(
            model, x, scale, eps, form="product", empcov_wd=EMPCOV_WD
        ),
        f"first layer precision {EMPCOV_WD:g}*Sigma^-1 + I/scale^2 (reference code form); "
        "Gaussian elsewhere",
    ),
    "sumfilter": NamedPrior(
        lambda model, x, scale, eps: _sumfilter(model, scale),
        "Gaussian plus an L1 penalty on each first conv filter's sum (conv models only)",
    ),
}


def make_prior(name: str, model: PyTree, x_train: np.ndarray, scale: float, eps: float) -> Prior:
    """The named prior (a key of `PRIORS`) for `model`, fitted to x_train (n, ...)."""
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; choose from {', '.join(PRIORS)}")
    return PRIORS[name].build(model, x_train, scale, eps)
