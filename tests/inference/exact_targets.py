"""Closed-form posteriors and a Monte Carlo moment checker for test_exact_posteriors.py.

Everything here is float64 numpy. `check_moments` compares draws, grouped by chain, with a
Gaussian N(mean, cov) (exact), or with a reference sampler's draws, and returns a report
that says which checks failed; every tolerance is Z standard errors, each standard error
computed from the draws at their measured effective sample size (ArviZ):

- mean of y = A (theta - mean), A = diag(cov)^-1/2 (marginal means) and A = cov^-1/2 (the
  whitened coordinates): SE = sd(y_k) / sqrt(bulk ESS of y_k);
- second moments E[u_i u_j] of the whitened u = cov^-1/2 (theta - mean), which must equal the
  identity: SE = sd(u_i u_j) / sqrt(ESS of u_i u_j) (ESS "mean" method, the one that governs the
  error of an average); the diagonal of the same moments in marginal coordinates is the
  marginal variance ratio (sd ratio = its square root);
- eigenvalues of cov^-1/2 Cov_hat cov^-1/2 (i.e. of E[u u^T]): each lies in a Gershgorin disc
  of the tolerated entries, so each must be within max_i sum_j Z SE_ij of 1;
- R-hat (rank-normalised, split) of every whitened coordinate, and an ESS floor.

Against a reference sampler, both sets are standardised with the reference's own mean and
covariance and the allowed difference is Z * sqrt(SE_draws^2 + SE_reference^2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import arviz as az
import jax
import numpy as np
from scipy.linalg import solve_discrete_lyapunov

from .test_sgmcmc import linear_dynamics

Z = 5.0  # standard errors allowed in every statistical check
RHAT_MAX = 1.1
MIN_ESS = 400  # below this the ESS (hence the standard errors) are themselves unreliable


# --- closed forms ---------------------------------------------------------------------------


def gaussian_posterior(
    features: np.ndarray,  # (n, p)
    y: np.ndarray,  # (n,)
    noise_std: float,
    prior_precision: np.ndarray,  # (p, p)
    temperature: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """y = features @ w + N(0, noise_std^2), w ~ N(0, prior_precision^-1), target
    (likelihood * prior)^(1/T) -> (mean (p,), cov (p, p)) = (mu, T Lambda^-1), with
    Lambda = prior_precision + features^T features / noise_std^2, mu = Lambda^-1 F^T y / s^2."""
    f = np.asarray(features, np.float64)
    precision = np.asarray(prior_precision, np.float64) + f.T @ f / noise_std**2
    mean = np.linalg.solve(precision, f.T @ np.asarray(y, np.float64) / noise_std**2)
    cov = temperature * np.linalg.inv(precision)
    return mean, 0.5 * (cov + cov.T)


def langevin_stationary_cov(
    precision: np.ndarray, eta: float, momentum: float, temperature: float
) -> np.ndarray:
    """Stationary covariance of full-batch SGLD (momentum 0) / SGHMC with Langevin step eta on
    a Gaussian target of precision L (untempered): in L's eigenbasis the dynamics split into
    independent scalar ones, each solved exactly by `linear_dynamics` and a Lyapunov equation
    (tests/inference/test_sgmcmc.py). For SGLD this is T (L - eta L^2 / 2)^-1."""
    lam, vecs = np.linalg.eigh(precision)
    var = [
        solve_discrete_lyapunov(*linear_dynamics(k, eta, momentum, temperature))[0, 0] for k in lam
    ]
    return (vecs * np.asarray(var)) @ vecs.T


def mean_field_optimum(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The KL(q || N(mean, cov))-optimal factorised Gaussian q: (mean, variances 1/diag(cov^-1))."""
    return mean, 1.0 / np.diag(np.linalg.inv(cov))


def inverse_sqrt(cov: np.ndarray) -> np.ndarray:
    """The symmetric cov^-1/2."""
    lam, vecs = np.linalg.eigh(cov)
    return (vecs / np.sqrt(lam)) @ vecs.T


# --- draws ----------------------------------------------------------------------------------


def flat_draws(draws) -> np.ndarray:
    """A params pytree with a leading draw axis -> (n_draws, n_params) float64, leaves in
    flattening order (for eqx.nn.Linear: weight row-major, then bias)."""
    leaves = [np.asarray(a, np.float64) for a in jax.tree.leaves(draws)]
    return np.concatenate([a.reshape(len(a), -1) for a in leaves], axis=1)


def by_chain(values: np.ndarray, draw_chain: np.ndarray) -> np.ndarray:
    """(n_draws, p) draws in any interleaving -> (n_chains, m, p), each chain's draws in order,
    all cut to the shortest chain's length m."""
    chains = [values[draw_chain == c] for c in np.unique(draw_chain)]
    m = min(len(c) for c in chains)
    return np.stack([c[:m] for c in chains])


def draw_iterations(post) -> np.ndarray:
    """(n_draws,) the post-burn-in iteration each draw was taken at. hmc stores draws
    iteration-major (every kept chain of iteration 0, then of iteration 1, ...), keep="accepted"
    only the accepted ones; that layout is asserted here. Other samplers: the draw's rank
    within its chain."""
    chain = np.asarray(post.draw_chain)
    if post.attrs.get("method") == "hmc":
        assert post.attrs["thin"] == 1
        accepted = np.asarray(post.stats["accepted"])[post.attrs["n_burnin"] :]
        kept = accepted if post.attrs["keep"] == "accepted" else np.ones_like(accepted)
        iteration, kept_chain = np.nonzero(kept)
        np.testing.assert_array_equal(kept_chain, chain)
        return iteration
    rank = np.zeros(len(chain), np.int64)
    for c in np.unique(chain):
        rank[chain == c] = np.arange(np.sum(chain == c))
    return rank


def posterior_chains(post, warmup: int = 0) -> np.ndarray:
    """A Posterior's draws as (n_chains, m, n_params), without those of the first `warmup`
    post-burn-in iterations."""
    later = draw_iterations(post) >= warmup
    return by_chain(flat_draws(post.draws)[later], np.asarray(post.draw_chain)[later])


def copies_as_chains(leaf: np.ndarray) -> np.ndarray:
    """Draws (n_draws, K, p) of a model holding K independent copies of one problem (one per
    output row) -> (K, n_draws, p): K independent chains (or replicates) of that problem."""
    return np.swapaxes(np.asarray(leaf, np.float64), 0, 1)


# --- moments with Monte Carlo errors -----------------------------------------------------------


@dataclass(frozen=True)
class Moments:
    """Moments of y = A (theta - centre) over draws (chains, m, p), with standard errors."""

    mean: np.ndarray  # (p,)
    mean_se: np.ndarray  # (p,) sd / sqrt(bulk ESS)
    second: np.ndarray  # (p, p) E[y y^T]
    second_se: np.ndarray  # (p, p) sd(y_i y_j) / sqrt(ESS of y_i y_j)
    min_ess: float
    max_rhat: float


def moments(chains: np.ndarray, centre: np.ndarray, transform: np.ndarray) -> Moments:
    """chains (C, m, p); y = transform @ (theta - centre)."""
    y = (chains - centre) @ transform.T  # (C, m, p)
    products = y[..., :, None] * y[..., None, :]  # (C, m, p, p)
    ess_bulk = np.asarray(az.ess(y, chain_axis=0, draw_axis=1, method="bulk"))
    ess_second = np.asarray(az.ess(products, chain_axis=0, draw_axis=1, method="mean"))
    return Moments(
        mean=y.mean(axis=(0, 1)),
        mean_se=y.std(axis=(0, 1)) / np.sqrt(ess_bulk),
        second=products.mean(axis=(0, 1)),
        second_se=products.std(axis=(0, 1)) / np.sqrt(ess_second),
        min_ess=float(min(ess_bulk.min(), ess_second.min())),
        max_rhat=float(np.max(az.rhat(y, chain_axis=0, draw_axis=1))) if len(y) > 1 else 1.0,
    )


@dataclass
class Report:
    """What `check_moments` measured, and the checks that failed (empty: all passed)."""

    sd_ratio: np.ndarray  # (p,) marginal sd / target sd
    mean_error: np.ndarray  # (p,) marginal mean error, in standard errors
    eigenvalues: np.ndarray  # of target^-1/2 Cov_hat target^-1/2
    min_ess: float
    max_rhat: float
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        return (
            f"sd ratio {np.round(self.sd_ratio, 3)}, mean error {np.round(self.mean_error, 2)} "
            f"SE, covariance eigenvalues {np.round(self.eigenvalues, 3)}, min ESS "
            f"{self.min_ess:.0f}, max R-hat {self.max_rhat:.3f}; failed: {self.failures or 'none'}"
        )


class Frame(NamedTuple):
    """Draws against the target in one coordinate frame y = A (theta - mean)."""

    ours: Moments
    mean_z: np.ndarray  # (p,) mean error in standard errors
    second_target: np.ndarray  # (p, p) the target's E[y y^T]
    second_tol: np.ndarray  # (p, p) Z standard errors of ours minus the target's

    @property
    def second_err(self) -> np.ndarray:
        return self.ours.second - self.second_target


def compare(chains, reference, mean, transform, z: float) -> Frame:
    """Moments of the draws in the frame against the exact ones (zero mean, identity second
    moments when `transform` whitens the target), or against the reference draws' moments."""
    ours = moments(chains, mean, transform)
    p = len(mean)
    if reference is None:
        mean_err, mean_se = ours.mean, ours.mean_se
        second, second_se = np.eye(p), ours.second_se
    else:
        ref = moments(reference, mean, transform)
        mean_err, mean_se = ours.mean - ref.mean, np.hypot(ours.mean_se, ref.mean_se)
        second, second_se = ref.second, np.hypot(ours.second_se, ref.second_se)
    return Frame(ours, mean_err / mean_se, second, z * second_se)


def check_moments(
    chains: np.ndarray,  # (C, m, p)
    mean: np.ndarray | None = None,  # (p,)
    cov: np.ndarray | None = None,  # (p, p)
    *,
    reference: np.ndarray | None = None,  # (C', m', p) draws of a trusted sampler instead
    z: float = Z,
    min_ess: float = MIN_ESS,
) -> Report:
    """Compare draws with N(mean, cov), or with `reference` draws; see the module docstring."""
    if reference is not None:
        flat = reference.reshape(-1, reference.shape[-1])
        mean, cov = flat.mean(0), np.cov(flat, rowvar=False)
    marginal = compare(chains, reference, mean, np.diag(np.diag(cov) ** -0.5), z)
    whitened = compare(chains, reference, mean, inverse_sqrt(cov), z)
    # every eigenvalue of I + D lies in a Gershgorin disc: within a row's tolerated |D_ij| of 1
    eigenvalues = 1.0 + np.linalg.eigvalsh(whitened.second_err)
    radius = whitened.second_tol.sum(axis=1).max()
    variance_err, variance_tol = np.diag(marginal.second_err), np.diag(marginal.second_tol)
    checks = {  # name -> (|errors|, tolerances); written so that NaN fails
        "marginal means (SE)": (np.abs(marginal.mean_z), z),
        "whitened means (SE)": (np.abs(whitened.mean_z), z),
        "marginal variances (SE)": (np.abs(variance_err) / variance_tol * z, z),
        "whitened second moments (SE)": (np.abs(whitened.second_err) / whitened.second_tol * z, z),
        "covariance eigenvalues": (np.abs(eigenvalues - 1), radius),
    }
    failures = [
        f"{name} off by {np.round(err, 3)} > {tol:.3g}"
        for name, (err, tol) in checks.items()
        if not np.all(err <= tol)
    ]
    report = Report(
        sd_ratio=np.sqrt(np.diag(marginal.ours.second) / np.diag(marginal.second_target)),
        mean_error=marginal.mean_z,
        eigenvalues=eigenvalues,
        min_ess=min(marginal.ours.min_ess, whitened.ours.min_ess),
        max_rhat=max(marginal.ours.max_rhat, whitened.ours.max_rhat),
        failures=failures,
    )
    if not report.min_ess >= min_ess:
        failures.append(f"ESS {report.min_ess:.0f} < {min_ess}")
    if not report.max_rhat <= RHAT_MAX:
        failures.append(f"R-hat {report.max_rhat:.3f} > {RHAT_MAX}")
    return report
