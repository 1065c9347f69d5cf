"""Prior selection by evidence: each named prior's Laplace log marginal likelihood, to set
beside the shift metrics of compare-priors.

For each prior the network is fitted to its own MAP (compare-priors' MAP settings) and the
evidence is the Laplace approximation's over the whole network with KFAC blocks (the EmpCov
precision enters exactly, bnn_shift.inference.laplace). It answers "which prior does the
training data favour?", a question separate from "which prior survives shift?". Laplace's
evidence assumes the MAP is the mode: the table reports the log joint's gradient norm there,
and a large one (EmpCov's stiff directions, prior sd sqrt(eps), are not reached by Adam) makes
that prior's evidence unreliable.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import optax
import pandas as pd

from bnn_shift.experiments.compare_priors import (
    ComparePriorsConfig,
    fit_map,
    initial_model,
    load_data,
)
from bnn_shift.inference.laplace import fit_laplace, log_marginal_likelihood
from bnn_shift.inference.target import make_target
from bnn_shift.priors import make_prior


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
        fitted = fit_map(model, prior, config, data, progress)
        approx = fit_laplace(
            fitted.draw(0), prior, data.x_train, data.y_train, hessian="kron", fit_map=False
        )
        evidence = log_marginal_likelihood(approx)
        target, params, x, y = make_target(fitted.draw(0), prior, data.x_train, data.y_train)
        grad = jax.grad(target.log_joint)(params, (jnp.asarray(x), jnp.asarray(y)))
        rows.append(
            {
                "prior": name,
                "log_marginal_likelihood": evidence,
                "per_example": evidence / len(data.y_train),
                "map_train_accuracy": float((fitted.predict(data.x_train) == data.y_train).mean()),
                "grad_norm_at_map": float(optax.global_norm(grad)),
                "seconds": time.perf_counter() - started,
            }
        )
    return pd.DataFrame(rows)
