"""Prior scales by the evidence, post hoc (as laplace-torch's marginal-likelihood tuning): with
the MAP theta* and the GGN fixed (computed once), one factor f_g per group of subset leaves
multiplies every prior sd in the group (covariance times f^2, precision times c = f^-2), and
L-BFGS-B maximises the Laplace evidence over log f:

    L(f) = [log_joint + sum_l (-(c_l - 1)/2 q_l + (n_l w_l / 2) log c_l)] / T
           + (d/2) log 2 pi T - 1/2 log det(GGN + P0(c)),

l over subset leaves (n_l entries, q_l = sum_rows theta*^T R theta*, w_l the weight of its prior:
`prior_weights`), c_l its group's c. Any prior with a Laplace form (Gaussian, EmpCov, `by_path`
compositions of them, tempered) rescales exactly: its precision is R per row, EmpCov's dense.
log det(GGN + P0(c)) per block (`Curvature.log_det_scaled`): diag in closed form; kron and a
one-group full block by the eigenvalues of the prior-whitened GGN, computed once; a full block
spanning groups by a Cholesky per evaluation. A KFAC layer takes one factor (its weight and bias
share the Kronecker factors).

Fixed mode: theta* is not refitted under the tuned prior, so L(f) is below the evidence at f
except at f = 1, where the two touch (theta* is the mode there). Alternating a MAP refit and this
tuning (MacKay's iteration) stops where they agree: at the evidence maximiser.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from bnn_shift.inference.laplace.approx import LaplaceApprox, evidence
from bnn_shift.inference.laplace.subset import _sizes
from bnn_shift.models.params import path_to_str
from bnn_shift.priors.compose import Selector, describe_selector, selects

Groups = str | Selector | Sequence[Selector] | None
MAX_FACTOR = 1e4  # factors are kept in [1 / MAX_FACTOR, MAX_FACTOR]


class PriorScaleFit(NamedTuple):
    """Prior-sd factors tuned by the fixed-mode Laplace evidence (`tune_prior_scale`)."""

    groups: tuple[str, ...]  # group names
    factors: np.ndarray  # (n_groups,) tuned multiplier of every prior sd in each group
    log_marginal_likelihood: float  # the evidence at them: that of `approx`
    history: np.ndarray  # (iterations + 1,) the evidence at f = 1 and after each iteration
    approx: LaplaceApprox  # the approximation under the tuned prior (same theta* and GGN)


def prior_groups(
    approx: LaplaceApprox, groups: Groups = None
) -> tuple[tuple[str, ...], np.ndarray]:
    """Group names and each subset leaf's group (n_selected,): None, one group "all";
    "layer", one per module (the path before the last dot, e.g. "layers.0"; layer-wise prior
    precisions); any other `by_path` selector or a list of them, the first that picks the leaf
    (every leaf must be picked, every selector pick one)."""
    flat = jax.tree_util.tree_flatten_with_path(approx.mean)[0]
    chosen = [flat[i] for i in approx.selected]
    paths = [path_to_str(key_path) for key_path, _ in chosen]
    if groups is None:
        return ("all",), np.zeros(len(chosen), np.int32)
    if groups == "layer":
        owners = [p.rpartition(".")[0] or "model" for p in paths]
        names = tuple(dict.fromkeys(owners))
        return names, np.asarray([names.index(o) for o in owners], np.int32)
    selectors = [groups] if isinstance(groups, str) or not isinstance(groups, Sequence) else groups
    names = tuple(describe_selector(s) for s in selectors)
    index = []
    for (key_path, leaf), path in zip(chosen, paths):
        hits = [g for g, s in enumerate(selectors) if selects(s, approx.mean, key_path, leaf)]
        if not hits:
            raise ValueError(f"subset leaf {path!r} is in none of the groups {names}; add '*'")
        index.append(hits[0])
    empty = [n for g, n in enumerate(names) if g not in index]
    if empty:
        raise ValueError(f"groups {empty} pick no subset leaf; subset paths are {paths}")
    return names, np.asarray(index, np.int32)


def _prior_change(c: jax.Array, quad: np.ndarray, dof: np.ndarray) -> jax.Array:
    """log p_c(theta*) - log p(theta*) of the subset, c (n_selected,) per-leaf multipliers of
    the prior precision, dof = n_l w_l."""
    return jnp.sum(-0.5 * (c - 1) * quad + 0.5 * dof * jnp.log(c))


class _Evidence(eqx.Module):
    """L as a function of log f (n_groups,), float64 under `jax.enable_x64`."""

    log_joint: np.ndarray  # ()
    quad: np.ndarray  # (n_selected,)
    dof: np.ndarray  # (n_selected,)
    leaf_group: np.ndarray  # (n_selected,)
    log_dets: tuple[eqx.Module, ...]
    dim: int = eqx.field(static=True)
    temperature: float = eqx.field(static=True)

    def __call__(self, log_f: jax.Array) -> jax.Array:
        c = jnp.exp(-2 * log_f)
        log_joint = self.log_joint + _prior_change(c[self.leaf_group], self.quad, self.dof)
        log_det = sum(term(c) for term in self.log_dets)
        return evidence(log_joint, log_det, self.dim, self.temperature)


@eqx.filter_jit
def _value_and_grad(log_f: jax.Array, objective: _Evidence) -> tuple[jax.Array, jax.Array]:
    return jax.value_and_grad(objective)(log_f)


def _rescaled(approx: LaplaceApprox, factors: np.ndarray, names: dict) -> LaplaceApprox:
    """The approximation with each subset leaf's prior sds times factors (n_selected,): the
    same theta* and GGN, its prior precision, log joint and prior terms rescaled; `names`
    (group -> factor) recorded in its settings as "prior_factors". Under `jax.enable_x64`."""
    c = np.asarray(factors, np.float64) ** -2
    dof = approx.prior_weight * np.asarray(_sizes(approx.mean, approx.selected))
    change = float(_prior_change(c, approx.prior_quad, dof))
    return dataclasses.replace(
        approx,
        curvature=approx.curvature.rescaled(np.repeat(c, _sizes(approx.mean, approx.selected))),
        log_joint=approx.log_joint + change,
        prior_quad=c * approx.prior_quad,
        settings=approx.settings | {"prior_factors": names},
    )


def tune_prior_scale(
    approx: LaplaceApprox, groups: Groups = None, *, max_iter: int = 200
) -> PriorScaleFit:
    """Maximise the fixed-mode Laplace evidence over one prior-sd factor per group (see the
    module docstring; groups as `prior_groups`) by L-BFGS-B on log f in +-log MAX_FACTOR.
    The fit's `approx` is the approximation under the tuned prior (predict or sample with it);
    its settings record the factors as "prior_factors" {group: factor}."""
    if not math.isfinite(approx.log_joint):
        raise ValueError("this approximation has no evidence (one rebuilt from a saved posterior)")
    names, leaf_group = prior_groups(approx, groups)
    sizes = np.asarray(_sizes(approx.mean, approx.selected))
    with jax.enable_x64(True):
        objective = _Evidence(
            np.asarray(approx.log_joint),
            approx.prior_quad,
            approx.prior_weight * sizes,
            leaf_group,
            approx.curvature.log_det_scaled(np.repeat(leaf_group, sizes)),
            approx.curvature.dim,
            approx.temperature,
        )

        def negative(log_f):
            value, grad = _value_and_grad(jnp.asarray(log_f), objective)
            return -float(value), -np.asarray(grad, np.float64)

        start = np.zeros(len(names))
        history = [-negative(start)[0]]
        result = scipy.optimize.minimize(
            negative,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=[(-math.log(MAX_FACTOR), math.log(MAX_FACTOR))] * len(names),
            options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-9},
            callback=lambda intermediate_result: history.append(-intermediate_result.fun),
        )
        factors = np.exp(result.x)
        tuned = _rescaled(approx, factors[leaf_group], dict(zip(names, factors.tolist())))
    return PriorScaleFit(names, factors, -float(result.fun), np.asarray(history), tuned)
