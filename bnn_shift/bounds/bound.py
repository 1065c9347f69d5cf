"""PAC-Bayes bounds for a point-mass posterior on a coded hypothesis, in float64 (REF 3.4-3.6).

The prior gives the hypothesis h probability 2^-(ℓ_p + b_hyp): ℓ_p is the prefix-free length of
its code and b_hyp = log2(number of configurations searched). So KL = (ℓ_p + b_hyp)·ln 2 nats.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

DELTA = 0.05
ALPHA = 1e-4  # ratio of the geometric λ-grid in Catoni's union bound
GRID_POINTS = 4001  # g = ln λ grid before Brent's refinement
EXTRA_LOG_RANGE = 12.0  # search g up to ln n + this (the reference stops at ln n + 4)


def hyperparameter_bits(n_configurations: int) -> float:
    """log2 of the number of configurations searched: a uniform prior over the grid."""
    if n_configurations < 1:
        raise ValueError(f"the number of configurations must be >= 1, got {n_configurations}")
    return math.log2(n_configurations)


def kl_nats(prefix_free_bits: float, hyper_bits: float = 0.0) -> float:
    """KL(point mass ‖ 2^-code prior) = (ℓ_p + b_hyp)·ln 2. Bits are never subtracted."""
    if prefix_free_bits < 0 or hyper_bits < 0:
        raise ValueError(
            f"code lengths must be >= 0 bits, got ℓ_p={prefix_free_bits}, b_hyp={hyper_bits}"
        )
    return (float(prefix_free_bits) + float(hyper_bits)) * math.log(2)


def _check(train_error: float, kl: float, n: int, delta: float) -> None:
    if not 0.0 <= train_error <= 1.0:
        raise ValueError(f"train_error must be a fraction in [0, 1], got {train_error}")
    if not (kl >= 0 and math.isfinite(kl)):
        raise ValueError(f"KL must be finite and >= 0 nats, got {kl}")
    if not (isinstance(n, int | np.integer) and n >= 1):
        raise ValueError(f"n must be a positive number of examples, got {n}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must lie in (0, 1), got {delta}")


def phi_inverse(a: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Φ⁻¹_a(q) = (1 - e^{-aq}) / (1 - e^{-a})."""
    return np.expm1(-a * q) / np.expm1(-a)


def catoni_at(
    train_error: float,
    kl: float,
    n: int,
    g: np.ndarray,
    *,
    delta: float = DELTA,
    alpha: float = ALPHA,
    union: bool = True,
) -> np.ndarray:
    """Catoni's bound at λ = e^g (g >= 0). `union=True` adds 2·ln(2 + g/ln(1+α)), the price of
    choosing λ from the geometric grid after seeing the data; without it the value holds only
    for a λ fixed in advance."""
    g = np.asarray(g, np.float64)
    lam = np.exp(g)
    penalty = kl + math.log(1 / delta)
    if union:
        penalty = penalty + 2 * np.log(2 + g / math.log1p(alpha))
    q = train_error + (1 + alpha) / lam * penalty
    return np.minimum(phi_inverse(lam / n, q), 1.0)


def catoni_bound(
    train_error: float, kl: float, n: int, *, delta: float = DELTA, alpha: float = ALPHA
) -> float:
    """min over the λ-grid of Catoni's bound on the 0-1 risk (with its union term).

    A dense grid over g = ln λ in [0, ln n + 12] finds the basin (also for high train errors,
    where the reference's Brent bracket fails), then Brent's method refines it.
    """
    _check(train_error, kl, n, delta)
    top = math.log(n) + EXTRA_LOG_RANGE
    grid = np.linspace(0.0, top, GRID_POINTS)
    values = catoni_at(train_error, kl, n, grid, delta=delta, alpha=alpha)
    i = int(np.argmin(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, GRID_POINTS - 1)]
    best = float(values[i])
    if hi > lo:
        res = minimize_scalar(
            lambda g: float(catoni_at(train_error, kl, n, g, delta=delta, alpha=alpha)),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-12},
        )
        best = min(best, float(res.fun))
    return best


def binary_kl(q: float, p: np.ndarray) -> np.ndarray:
    """kl(q ‖ p) between Bernoulli(q) and Bernoulli(p), in nats."""
    p = np.clip(np.asarray(p, np.float64), 1e-300, 1 - 1e-16)
    first = q * math.log(q) - q * np.log(p) if q > 0 else 0.0
    second = (1 - q) * math.log(1 - q) - (1 - q) * np.log1p(-p) if q < 1 else 0.0
    return first + second


def occam_bound(train_error: float, kl: float, n: int, *, delta: float = DELTA) -> float:
    """The Occam (kl-inverse) bound: the largest p with kl(R̂ ‖ p) <= (KL + ln(1/δ)) / n.

    Chernoff's bound for each coded hypothesis, union-bounded with weights 2^-code; found by
    bisection in float64.
    """
    _check(train_error, kl, n, delta)
    budget = (kl + math.log(1 / delta)) / n
    lo, hi = train_error, 1.0
    if binary_kl(train_error, hi) <= budget:
        return 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if binary_kl(train_error, mid) <= budget else (lo, mid)
    return hi


def mcallester_bound(train_error: float, kl: float, n: int, *, delta: float = DELTA) -> float:
    """McAllester's bound R̂ + √((KL + ln(n/δ)) / (2n - 1)), capped at 1."""
    _check(train_error, kl, n, delta)
    return min(1.0, train_error + math.sqrt((kl + math.log(n / delta)) / (2 * n - 1)))


def prior_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random split of n examples -> (prior indices, bound indices).

    A data-dependent prior is trained on the first part only; the bound's train error and n
    must then come from the second part only.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"prior fraction must lie in [0, 1), got {fraction}")
    order = np.random.default_rng([seed, 0xB0]).permutation(n)
    n_prior = round(fraction * n)
    if n - n_prior < 1:
        raise ValueError(f"a prior fraction of {fraction} leaves no data to bound on")
    return np.sort(order[:n_prior]), np.sort(order[n_prior:])
