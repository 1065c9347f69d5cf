"""The estimators' `inference=` names, each mapped onto one bnn_shift.inference engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import jax
import numpy as np

from bnn_shift.inference import (
    adjusted_mclmc,
    deep_ensemble,
    hmc,
    laplace,
    mala,
    map_fit,
    mclmc,
    mfvi,
    mile,
    nuts,
    sgld,
    swag,
)
from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.inference.posterior import Posterior
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree


@dataclass(frozen=True)
class Settings:
    """The estimator's engine settings, as given to its constructor."""

    step_size: float | str
    n_iterations: int
    n_burnin: int
    trajectory_length: float | None
    max_leapfrogs: int | None
    n_chains: int
    epochs: int
    learning_rate: float
    batch_size: int | None
    n_members: int
    temperature: float
    init: str
    progress: bool


@dataclass(frozen=True)
class Problem:
    """What to fit: a model, its prior and likelihood, the data and the seed."""

    model: PyTree
    make_model: Callable[[jax.Array], PyTree]  # key -> a fresh model (ensemble members)
    prior: Prior
    likelihood: Likelihood
    x: np.ndarray  # (n, d) float32
    y: np.ndarray  # (n,) int labels or (n,) / (n, k) float targets
    seed: int


def _batch(s: Settings, n: int) -> int | None:
    """Full batch by default; a batch_size above the data size (a small CV fold) is clipped."""
    return None if s.batch_size is None else min(int(s.batch_size), n)


START_POINTS = ("map", "random")


def _start(p: Problem, s: Settings) -> tuple[Problem, int]:
    """The samplers' starting point: a MAP fit (init="map") or the random initialisation;
    and the full-batch-equivalent gradients it took (one per epoch)."""
    if s.init not in START_POINTS:
        raise ValueError(f"init must be one of {START_POINTS}, got {s.init!r}")
    if s.init == "random":
        return p, 0
    return replace(p, model=_map(p, s).draw(0)), s.epochs


def _run_from_start(engine: Callable[..., Posterior], p: Problem, s: Settings, **settings):
    """`engine` from the samplers' starting point (`_start`), whose gradients are added to
    attrs["n_init_gradients"]."""
    started, spent = _start(p, s)
    post = _run(engine, started, s, **settings)
    post.attrs["n_init_gradients"] = post.attrs.get("n_init_gradients", 0) + spent
    return post


def _run(engine: Callable[..., Posterior], p: Problem, s: Settings, **settings) -> Posterior:
    """`engine` on the problem's model, prior, data, likelihood and seed."""
    return engine(
        p.model,
        p.prior,
        p.x,
        p.y,
        seed=p.seed,
        progress=s.progress,
        likelihood=p.likelihood,
        **settings,
    )


def _chains(s: Settings) -> dict:
    """The settings every step-size sampler (hmc, mala) takes."""
    return {
        "step_size": s.step_size,
        "n_iterations": s.n_iterations,
        "n_burnin": s.n_burnin,
        "temperature": s.temperature,
        "n_chains": s.n_chains,
    }


def _hmc(p: Problem, s: Settings) -> Posterior:
    return _run_from_start(
        hmc, p, s, trajectory_length=s.trajectory_length,
        max_leapfrogs=s.max_leapfrogs, adapt_step=True, **_chains(s),
    )  # fmt: skip


def _hmc_adapted(p: Problem, s: Settings) -> Posterior:
    return _run_from_start(
        hmc, p, s, trajectory_length=s.trajectory_length, adapt_mass=True, **_chains(s)
    )


def _nuts(p: Problem, s: Settings) -> Posterior:
    if s.n_burnin < 1 or s.n_iterations <= s.n_burnin:
        raise ValueError(
            f"NUTS warms up for n_burnin >= 1 iterations and keeps the rest, so it needs "
            f"1 <= n_burnin < n_iterations; got n_burnin={s.n_burnin}, "
            f"n_iterations={s.n_iterations}"
        )
    return _run_from_start(
        nuts,
        p,
        s,
        n_warmup=s.n_burnin,
        n_samples=s.n_iterations - s.n_burnin,
        n_chains=s.n_chains,
        temperature=s.temperature,
    )


def _epochs(s: Settings, n: int) -> dict:
    """The settings every epoch-based engine takes."""
    return {"n_epochs": s.epochs, "batch_size": _batch(s, n), "learning_rate": s.learning_rate}


def _map(p: Problem, s: Settings) -> Posterior:
    return _run(map_fit, p, s, **_epochs(s, len(p.x)))


def _ensemble(p: Problem, s: Settings) -> Posterior:
    return _run(
        deep_ensemble, p, s, n_members=s.n_members, init_fn=p.make_model, **_epochs(s, len(p.x))
    )


def _sgld(p: Problem, s: Settings) -> Posterior:
    return _run_from_start(
        sgld,
        p,
        s,
        n_burnin_epochs=s.epochs // 2,
        temperature=s.temperature,
        **_epochs(s, len(p.x)),
    )


def _vi(p: Problem, s: Settings) -> Posterior:
    return _run(mfvi, p, s, temperature=s.temperature, **_epochs(s, len(p.x)))


def _mala(p: Problem, s: Settings) -> Posterior:
    return _run_from_start(mala, p, s, **_chains(s))


def _mclmc(p: Problem, s: Settings) -> Posterior:
    return _run_from_start(mclmc, p, s, **_chains(s))


def _adjusted_mclmc(p: Problem, s: Settings) -> Posterior:
    return _run_from_start(adjusted_mclmc, p, s, **_chains(s))


def _mile(p: Problem, s: Settings) -> Posterior:
    chains = {k: v for k, v in _chains(s).items() if k != "n_chains"}  # one chain per member
    return _run(mile, p, s, n_members=s.n_members, **chains)


def _swag(p: Problem, s: Settings) -> Posterior:
    return _run_from_start(swag, p, s, **_epochs(s, len(p.x)))


def _multiswag(p: Problem, s: Settings) -> Posterior:
    members = _ensemble(p, s)
    starts = [members.draw(i) for i in range(members.n_draws)]
    return _run(swag, replace(p, model=starts), s, **_epochs(s, len(p.x)))


def _laplace(p: Problem, s: Settings) -> Posterior:
    point = _map(p, s).draw(0)
    return laplace(
        point, p.prior, p.x, p.y, subset="last_layer", hessian="full", fit_map=False, seed=p.seed,
        likelihood=p.likelihood, temperature=s.temperature,
    )  # fmt: skip


@dataclass(frozen=True)
class Engine:
    """An `inference=` name's runner and its one-line description."""

    fit: Callable[[Problem, Settings], Posterior]
    doc: str


ENGINES: dict[str, Engine] = {
    "hmc": Engine(
        _hmc, "full-batch HMC: n_iterations (n_burnin adapt the step), trajectory_length"
    ),
    "hmc_adapted": Engine(
        _hmc_adapted, "HMC with a diagonal mass and step adapted over n_burnin (>= 150) iterations"
    ),
    "nuts": Engine(_nuts, "NUTS: n_burnin warm-up steps, then n_iterations - n_burnin draws"),
    "mala": Engine(_mala, "MALA: n_iterations (n_burnin without MH), step_size"),
    "mclmc": Engine(_mclmc, "unadjusted MCLMC, step and L tuned by BlackJAX: n_iterations"),
    "mile": Engine(_mile, "MILE: n_members MAP fits, then an MCLMC chain from each"),
    "adjusted_mclmc": Engine(
        _adjusted_mclmc, "Metropolis-adjusted MCLMC: n_iterations (n_burnin without MH)"
    ),
    "map": Engine(_map, "MAP point estimate: epochs of Adam at learning_rate"),
    "ensemble": Engine(_ensemble, "n_members MAP fits from different initialisations"),
    "sgld": Engine(_sgld, "SGLD: epochs at learning_rate, draws from the second half"),
    "vi": Engine(_vi, "mean-field Gaussian VI: epochs of Adam at learning_rate"),
    "swag": Engine(_swag, "SWAG: epochs of SGD at learning_rate from the MAP fit"),
    "multiswag": Engine(_multiswag, "MultiSWAG: SWAG from each of n_members MAP fits"),
    "laplace": Engine(_laplace, "last-layer Laplace (full GGN) at the MAP fit"),
}


def fit_posterior(inference: str, problem: Problem, settings: Settings) -> Posterior:
    """Run the engine named `inference` on `problem`."""
    if inference not in ENGINES:
        raise ValueError(f"unknown inference {inference!r}; choose from {', '.join(ENGINES)}")
    return ENGINES[inference].fit(problem, settings)
