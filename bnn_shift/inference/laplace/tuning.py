"""The prior scale by the evidence: MacKay's fixed-mode ascent of the Laplace evidence in the
sd of an isotropic Gaussian prior on the subset."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bnn_shift.inference.laplace.approx import LaplaceApprox
from bnn_shift.inference.laplace.subset import _subset_vector


class PriorScaleFit(NamedTuple):
    scale: float  # the tuned Gaussian prior sd of the subset
    log_marginal_likelihood: float  # the Laplace evidence at it (fixed MAP and curvature)
    history: np.ndarray  # (n_steps,) the evidence along the ascent


def tune_prior_scale(
    approx: LaplaceApprox, *, n_steps: int = 300, learning_rate: float = 0.05
) -> PriorScaleFit:
    """Adam ascent on s = log sigma of the Laplace evidence with a Gaussian(sigma) prior on the
    subset, at the fitted MAP theta* and GGN (not refitted: MacKay's fixed-mode evidence):

        L(s) = [log_joint_rest - |theta_s*|^2 / (2 sigma^2) - d log sigma - (d/2) log 2 pi] / T
               + (d/2) log 2 pi - 1/2 sum_j log(h_j + sigma^-2) + (d/2) log T,

    h_j the eigenvalues of the GGN's structure (exact for full and diag; for kron those of G
    kron A). Its stationary point solves d sigma^2 = |theta_s*|^2 + T sum_j 1 / (h_j +
    sigma^-2). Needs the subset's prior to be one isotropic Gaussian (L(s0) is then the
    approximation's own `log_marginal_likelihood`)."""
    if approx.subset_precision is None:
        raise ValueError(
            "tune_prior_scale needs one isotropic Gaussian prior over the subset; this "
            f"approximation's prior is {approx.settings['prior']}"
        )
    d, t = approx.curvature.dim, approx.temperature
    theta = _subset_vector(approx.mean, approx.selected)
    eig = np.clip(approx.curvature.ggn_eigenvalues(), 0, None)
    s0 = -0.5 * math.log(approx.subset_precision)
    prior_subset = -0.5 * theta @ theta * approx.subset_precision - d * s0
    rest = approx.log_joint - prior_subset + 0.5 * d * math.log(2 * math.pi)
    with jax.enable_x64(True):
        sq, h = jnp.asarray(theta @ theta), jnp.asarray(eig)

        def evidence(s):
            log_joint = rest - 0.5 * sq * jnp.exp(-2 * s) - d * s - 0.5 * d * math.log(2 * math.pi)
            log_det = jnp.sum(jnp.log(h + jnp.exp(-2 * s)))
            return log_joint / t + 0.5 * d * math.log(2 * math.pi * t) - 0.5 * log_det

        optimizer = optax.adam(learning_rate)
        s, state, history = jnp.asarray(s0), optimizer.init(jnp.asarray(s0)), []
        value_and_grad = jax.jit(jax.value_and_grad(evidence))
        for _ in range(n_steps):
            value, grad = value_and_grad(s)
            updates, state = optimizer.update(-grad, state)
            s, history = optax.apply_updates(s, updates), [*history, float(value)]
        return PriorScaleFit(float(jnp.exp(s)), float(evidence(s)), np.asarray(history))
