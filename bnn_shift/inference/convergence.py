"""Convergence of a sampler run, reported rather than assumed: function-space R-hat and ESS.

Weight-space R-hat means little for neural networks (permutation symmetries); the per-chain
traces of the training log-likelihood and of each labelled eval set's log predictive are what
the chains must agree on. One chain cannot show that it has not mixed, so R-hat needs >= 2.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import arviz as az
import numpy as np

from bnn_shift.inference.chains import POINTWISE
from bnn_shift.inference.posterior import Posterior

RHAT_WARNING = 1.1  # R-hat above this: the chains disagree (Vehtari et al. 2021 ask for 1.01)
MIN_DRAWS = 4  # post-burn-in iterations per chain that R-hat/ESS need


def function_space_rhat(trace: dict[str, np.ndarray], n_burnin: int) -> dict[str, dict[str, float]]:
    """name -> {"r_hat", "ess_bulk"} of each (n_iterations, n_chains) trace after burn-in, for
    the log-likelihood and log-predictive traces; empty with < 2 chains or < MIN_DRAWS draws."""
    out = {}
    for name, values in trace.items():
        scalar = name == "log_likelihood" or name.endswith("_log_predictive")
        if not scalar or name.endswith(POINTWISE):
            continue
        values = np.asarray(values, np.float64)[n_burnin:]  # (draws, chains)
        if values.ndim != 2 or values.shape[1] < 2 or values.shape[0] < MIN_DRAWS:
            continue
        out[name] = {
            "r_hat": float(az.rhat(values, chain_axis=1, draw_axis=0)),
            "ess_bulk": float(az.ess(values, chain_axis=1, draw_axis=0, method="bulk")),
        }
    return out


def pointwise_rhat(values: np.ndarray) -> np.ndarray:  # (m,)
    """Rank-normalised split R-hat (ArviZ) of each point's trace; values (n_draws, n_chains, m)."""
    values = np.asarray(values, np.float64)
    if values.ndim != 3 or values.shape[1] < 2 or values.shape[0] < MIN_DRAWS:
        raise ValueError(
            f"per-point R-hat needs (n_draws >= {MIN_DRAWS}, n_chains >= 2, m) values, "
            f"got shape {values.shape}"
        )
    return np.asarray(az.rhat(values, chain_axis=1, draw_axis=0), np.float64)


def pointwise_summary(trace: dict[str, np.ndarray], n_burnin: int) -> dict[str, dict[str, float]]:
    """eval name -> median, 90th percentile and max of its points' log-predictive R-hat, and the
    share of points above RHAT_WARNING; for every per-point trace with >= 2 chains and
    >= MIN_DRAWS post-burn-in draws. Points whose trace never varies (R-hat undefined) are left
    out."""
    out = {}
    for name, values in trace.items():
        if not name.endswith(POINTWISE):
            continue
        values = np.asarray(values)[n_burnin:]
        if values.shape[1] < 2 or values.shape[0] < MIN_DRAWS:
            continue
        r = pointwise_rhat(values)
        r = r[np.isfinite(r)]  # a point every chain predicts with certainty has no variance
        if not r.size:
            continue
        out[name.removesuffix(POINTWISE)] = {
            "median": float(np.median(r)),
            "q90": float(np.quantile(r, 0.9)),
            "max": float(np.max(r)),
            "share_above": float(np.mean(r > RHAT_WARNING)),
        }
    return out


def max_rhat(attrs: dict) -> float | None:
    """The largest function-space R-hat recorded in a posterior's attrs; None when unchecked."""
    convergence = attrs.get("convergence")
    if not isinstance(convergence, dict) or not convergence:
        return None
    return max(v["r_hat"] for v in convergence.values())


def stuck_chains(posterior: Posterior) -> list[int]:
    """Chains that never moved after burn-in (their draws all repeat one state): those that
    accepted no proposal, or for samplers without an accept record (NUTS) those whose log
    density never changed."""
    n_burnin = int(posterior.attrs.get("n_burnin", 0))
    accepted = posterior.stats.get("accepted")
    if accepted is None:
        return unmoved_chains(posterior.stats, n_burnin) if "log_density" in posterior.stats else []
    sampled = np.asarray(accepted)[n_burnin:]
    return [int(c) for c in np.flatnonzero(~sampled.any(axis=0))] if len(sampled) else []


def unmoved_chains(stats: Mapping[str, np.ndarray], n_burnin: int) -> list[int]:
    """Chains whose log density never changed from the end of burn-in on (stats
    (n_iterations, n_chains)): they stayed at one state, every proposal refused."""
    values = np.asarray(stats["log_density"])[max(n_burnin - 1, 0) :]
    if len(values) < 2:
        return []
    return [int(c) for c in np.flatnonzero(np.all(values == values[0], axis=0))]


def check_convergence(posterior: Posterior) -> Posterior:
    """Store function-space R-hat/ESS in posterior.attrs["convergence"] and warn when any R-hat
    exceeds RHAT_WARNING or a chain never moved after burn-in; a one-chain run is labelled
    unchecked. Returns the same posterior."""
    stuck = stuck_chains(posterior)
    if stuck:
        warnings.warn(
            f"{posterior.attrs.get('method', 'the')} chains {stuck} never moved after burn-in: "
            "their draws all repeat one state (every proposal diverged or was refused; step "
            f"size {posterior.attrs.get('step_size')}); check the temperature, the prior scale "
            "and the input scale, or lower the step size",
            stacklevel=3,
        )
    n_burnin = int(posterior.attrs.get("n_burnin", 0))
    summary = function_space_rhat(posterior.trace, n_burnin)
    posterior.attrs["convergence"] = summary or "unchecked (R-hat needs >= 2 chains and >= 4 draws)"
    bad = {
        name: round(v["r_hat"], 3) for name, v in summary.items() if not v["r_hat"] <= RHAT_WARNING
    }
    posterior.attrs["converged"] = (not bad) if summary else None
    pointwise = pointwise_summary(posterior.trace, n_burnin)
    if pointwise:
        posterior.attrs["pointwise_rhat"] = pointwise
    if bad:
        warnings.warn(
            f"{posterior.attrs.get('method', 'sampler')} chains have not converged: function-space "
            f"R-hat {bad} > {RHAT_WARNING}; run more iterations (or burn-in) before trusting the "
            "model average",
            stacklevel=3,
        )
    return posterior
