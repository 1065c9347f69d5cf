"""Prior selection by evidence: each named prior's Laplace log marginal likelihood, to set
beside the shift metrics of compare-priors.

For each prior the network is fitted to its own MAP (compare-priors' MAP settings, started at a
draw of that prior and optimised in the prior's whitened coordinates: a dense EmpCov first
layer has directions of prior sd sqrt(eps) that Adam does not settle along in the weights'
own coordinates) and the evidence is the Laplace approximation's over the whole network with
KFAC blocks (the EmpCov precision enters exactly, bnn_shift.inference.laplace). It answers
"which prior does the training data favour?", a question separate from "which prior survives
shift?". Laplace's evidence assumes the MAP is the mode: the table reports the log joint's
gradient norm there, in the coordinates it was optimised in (whitened ones make the stiff
directions' gradients comparable with the rest).
"""

from __future__ import annotations

import time

import jax
import optax
import pandas as pd

from bnn_shift.data.dataset import Dataset
from bnn_shift.experiments.compare_priors import (
    ComparePriorsConfig,
    initial_model,
    load_data,
    map_from_prior_draw,
)
from bnn_shift.inference.laplace import fit_laplace, log_marginal_likelihood
from bnn_shift.inference.minibatch import prepare_epochs
from bnn_shift.priors import make_prior
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree


def prior_evidence(config: ComparePriorsConfig, progress: bool = False) -> pd.DataFrame:
    """One row per prior in config.priors: its Laplace log evidence (total and per training
    example), the MAP's training accuracy, the log joint's gradient norm at the MAP (0 at a
    mode) and the seconds taken."""
    data = load_data(config)
    rows = []
    for name in config.priors:
        started = time.perf_counter()
        model = initial_model(config, data)
        prior = make_prior(name, model, data.x_train, config.prior_scale, config.empcov_eps)
        fitted = map_from_prior_draw(model, prior, config, data, progress)
        approx = fit_laplace(
            fitted.draw(0), prior, data.x_train, data.y_train, hessian="kron", fit_map=False
        )
        evidence = log_marginal_likelihood(approx)
        grad = stationarity(fitted.draw(0), prior, data)
        rows.append(
            {
                "prior": name,
                "log_marginal_likelihood": evidence,
                "per_example": evidence / len(data.y_train),
                "map_train_accuracy": float((fitted.predict(data.x_train) == data.y_train).mean()),
                "grad_norm_at_map": grad,
                "seconds": time.perf_counter() - started,
            }
        )
    return pd.DataFrame(rows)


def stationarity(model: PyTree, prior: Prior, data: Dataset) -> float:
    """||gradient of the log joint|| at `model`, in the prior's whitened coordinates (the
    weights' own where the prior has no dense EmpCov first layer): 0 at a mode."""
    problem = prepare_epochs(model, prior, data.x_train, data.y_train, whiten_first_layer=True)
    target, position = problem.target, problem.params
    if target.whitening is not None:
        position = target.whitening.to_whitened(position)
    return float(optax.tree.norm(jax.grad(target.log_joint)(position, problem.data)))
