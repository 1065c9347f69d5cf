"""`bound_model`: any `bnn_shift` model + data -> a certified bound on its 0-1 test error.

The hypothesis is coded as (architecture, θ₀, projector seed, codebook, symbols). θ₀ and the
architecture must be chosen before seeing the bound data: a fixed random init
(data-independent), or a network fitted on a held-out prior split (`prior_fraction > 0`: a MAP
fit or a posterior draw, then bounded on the complement only).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bnn_shift.bounds.bound import (
    DELTA,
    catoni_bound,
    kl_nats,
    mcallester_bound,
    occam_bound,
    prior_split,
)
from bnn_shift.bounds.coding import CodeLength, code_length
from bnn_shift.bounds.quantize import (
    CODEBOOK_DTYPES,
    LEVEL_INITS,
    assign,
    bits_per_level,
    init_levels,
    round_levels,
)
from bnn_shift.bounds.subspace import DEFAULT_SEED, PROJECTORS, make_subspace
from bnn_shift.bounds.train import error_rate, fit_quantized, fit_subspace
from bnn_shift.models.params import partition_params
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree

PriorFit = Callable[[PyTree, np.ndarray, np.ndarray], PyTree]
# A regulariser, or a factory that builds one from the inputs it may look at (e.g. EmpCov).
Regulariser = Prior | Callable[[np.ndarray], Prior] | None


@dataclass(frozen=True)
class BoundSettings:
    """Every choice that shapes the coded hypothesis and its bound."""

    intrinsic_dim: int = 1000  # d; 0 bounds θ₀ itself (with a data-dependent prior)
    projector: str = "kron-qr"
    projector_seed: int = DEFAULT_SEED
    n_levels: int = 7  # L
    level_init: str = "kmeans"
    codebook_dtype: str = "float16"  # levels are coded (and evaluated) at this precision
    epochs: int = 10
    quant_epochs: int = 2
    batch_size: int = 256
    learning_rate: float = 0.02
    quant_learning_rate: float = 1e-3
    hyper_bits: float = 10.0  # log2(configurations searched): 10 covers a 1,024-point grid
    prior_fraction: float = 0.0  # share of the training set that trains θ₀
    prior_epochs: int = 10  # epochs of the default MAP fit of θ₀ on the prior split
    delta: float = DELTA
    seed: int = 0  # minibatch order (and the prior split)

    def __post_init__(self):
        if self.intrinsic_dim < 0:
            raise ValueError(f"intrinsic_dim must be >= 0, got {self.intrinsic_dim}")
        if self.projector not in PROJECTORS:
            raise ValueError(
                f"unknown projector {self.projector!r}; choose from {list(PROJECTORS)}"
            )
        if self.level_init not in LEVEL_INITS:
            raise ValueError(f"unknown level_init {self.level_init!r}; choose from {LEVEL_INITS}")
        if self.n_levels < 1:
            raise ValueError(f"n_levels must be >= 1, got {self.n_levels}")
        if self.hyper_bits < 0:
            raise ValueError(
                f"hyper_bits must be >= 0 (never subtract bits), got {self.hyper_bits}"
            )
        if self.codebook_dtype not in CODEBOOK_DTYPES:
            raise ValueError(
                f"codebook_dtype must be one of {CODEBOOK_DTYPES}, got {self.codebook_dtype!r}"
            )


@dataclass
class BoundReport:
    """The bound and everything it is made of (errors are fractions, KL in nats)."""

    train_error: float  # quantised hypothesis, on the n bound examples: R̂
    n: int  # examples the bound covers
    kl: float
    catoni: float  # the bound
    occam: float
    mcallester: float
    code: CodeLength
    hyper_bits: float
    n_params: int  # D
    intrinsic_dim: int  # d
    float_train_error: float  # the subspace fit before quantisation
    test_error: float | None  # quantised hypothesis, when test data are given
    wall_seconds: float
    regulariser: str
    settings: BoundSettings
    # the coded message: symbols (d,), levels (L,) as coded, and w (d,) before snapping
    arrays: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def bound(self) -> float:
        return self.catoni

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, the code length broken down, and the settings."""
        skip = ("code", "settings", "arrays")
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        code = self.code
        out["code"] = {
            **dataclasses.asdict(code),
            "message_bits": code.message_bits,
            "prefix_free_bits": code.prefix_free_bits,
        }
        out["settings"] = dataclasses.asdict(self.settings)
        return out

    def summary(self) -> str:
        test = "" if self.test_error is None else f", test error {self.test_error:.4f}"
        return (
            f"train error {self.train_error:.4f} (float {self.float_train_error:.4f}){test}; "
            f"d = {self.intrinsic_dim} of D = {self.n_params}; code {self.code.message_bits} bits "
            f"(prefix-free {self.code.prefix_free_bits:.1f}, +{self.hyper_bits:g} hyperparameter); "
            f"KL {self.kl:.1f} nats; n = {self.n}; Catoni bound {self.catoni:.4f} "
            f"(Occam {self.occam:.4f}, McAllester {self.mcallester:.4f}); {self.wall_seconds:.0f} s"
        )


def map_prior_fit(regulariser: Prior | None, settings: BoundSettings, progress: bool) -> PriorFit:
    """θ₀ = the MAP fit of the whole network (Adam, lr 1e-3) on the prior split."""
    from bnn_shift.inference.map import map_fit
    from bnn_shift.priors import Gaussian

    prior = regulariser if regulariser is not None else Gaussian(1.0)

    def fit(model: PyTree, x: np.ndarray, y: np.ndarray) -> PyTree:
        batch = min(settings.batch_size, len(x))
        return map_fit(
            model,
            prior,
            x,
            y,
            n_epochs=settings.prior_epochs,
            batch_size=batch,
            optimizer="adam",
            learning_rate=1e-3,
            seed=settings.seed,
            progress=progress,
        ).draw(0)

    return fit


def bound_model(
    model: PyTree,
    x: np.ndarray,
    y: np.ndarray,
    settings: BoundSettings = BoundSettings(),
    *,
    regulariser: Regulariser = None,
    fit_prior: PriorFit | None = None,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    progress: bool = True,
    run_dir: str | Path | None = None,
) -> BoundReport:
    """Train `model` in a random subspace around its weights, quantise, code, and bound.

    model: θ₀ and the architecture; must not have seen (x, y) unless `prior_fraction > 0`.
    regulariser: a `bnn_shift` prior whose -log density/n joins the loss (MAP in the subspace),
        or a factory x -> prior; with a prior split the factory sees only the split's inputs,
        so a data-built prior (EmpCov) never leaks the bound data into θ₀.
    fit_prior: with `settings.prior_fraction > 0`, (model, x_prior, y_prior) -> fitted model,
        e.g. `lambda m, x, y: hmc(m, prior, x, y, ...).draw(-1)`; the default is a MAP fit
        under the regulariser. The bound then uses only the complement of the prior split.
    run_dir: checkpoint the subspace and quantisation-aware training after every epoch
        (run_dir/subspace, run_dir/quantised); calling again with the same run_dir resumes.
    """
    started = time.perf_counter()
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if settings.prior_fraction > 0:
        prior_idx, bound_idx = prior_split(len(x), settings.prior_fraction, settings.seed)
        regulariser = _build(regulariser, x[prior_idx])
        fit = fit_prior or map_prior_fit(regulariser, settings, progress)
        model = fit(model, x[prior_idx], y[prior_idx])
        x, y = x[bound_idx], y[bound_idx]
    elif fit_prior is not None:
        raise ValueError("fit_prior needs settings.prior_fraction > 0 (a held-out prior split)")
    else:
        regulariser = _build(regulariser, x)

    d = settings.intrinsic_dim
    if d == 0:  # the hypothesis is θ₀ itself: nothing to code but the hyperparameters
        hypothesis, float_error, arrays = model, None, {}
        code = code_length(np.zeros(0, np.int64), settings.n_levels)
        n_params = int(sum(a.size for a in jax.tree.leaves(partition_params(model)[0])))
    else:
        subspace = make_subspace(model, d, settings.projector, settings.projector_seed)
        common = dict(regulariser=regulariser, batch_size=settings.batch_size, progress=progress)
        w, _ = fit_subspace(
            subspace,
            x,
            y,
            n_epochs=settings.epochs,
            learning_rate=settings.learning_rate,
            seed=settings.seed,
            run_dir=None if run_dir is None else Path(run_dir) / "subspace",
            **common,
        )
        float_error = error_rate(subspace.model(w), x, y)
        levels = jnp.asarray(init_levels(np.asarray(w), settings.n_levels, settings.level_init))
        if settings.quant_epochs > 0:
            w, levels, _ = fit_quantized(
                subspace,
                w,
                levels,
                x,
                y,
                n_epochs=settings.quant_epochs,
                learning_rate=settings.quant_learning_rate,
                seed=settings.seed,
                run_dir=None if run_dir is None else Path(run_dir) / "quantised",
                **common,
            )
        levels = jnp.asarray(round_levels(np.asarray(levels), settings.codebook_dtype))
        symbols = assign(jnp.asarray(w), levels)
        hypothesis = subspace.model(levels[symbols])
        arrays = {"symbols": np.asarray(symbols), "levels": np.asarray(levels), "w": np.asarray(w)}
        code = code_length(
            np.asarray(symbols), settings.n_levels, bits_per_level(settings.codebook_dtype)
        )
        n_params = subspace.n_params

    train_error = error_rate(hypothesis, x, y)
    kl = kl_nats(code.prefix_free_bits, settings.hyper_bits)
    n = len(x)
    test_error = None if x_test is None else error_rate(hypothesis, x_test, y_test)
    return BoundReport(
        train_error=train_error,
        n=n,
        kl=kl,
        catoni=catoni_bound(train_error, kl, n, delta=settings.delta),
        occam=occam_bound(train_error, kl, n, delta=settings.delta),
        mcallester=mcallester_bound(train_error, kl, n, delta=settings.delta),
        code=code,
        hyper_bits=settings.hyper_bits,
        n_params=n_params,
        intrinsic_dim=d,
        float_train_error=train_error if float_error is None else float_error,
        test_error=test_error,
        wall_seconds=time.perf_counter() - started,
        regulariser="none" if regulariser is None else regulariser.describe(),
        settings=settings,
        arrays=arrays,
    )


def _build(regulariser: Regulariser, x: np.ndarray) -> Prior | None:
    if regulariser is None or isinstance(regulariser, Prior):
        return regulariser
    return regulariser(x)


def compare_prior_bounds(
    model: PyTree,
    x: np.ndarray,
    y: np.ndarray,
    regularisers: Mapping[str, Regulariser],
    settings: BoundSettings = BoundSettings(),
    *,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    progress: bool = True,
) -> dict[str, BoundReport]:
    """Bound networks trained under each prior (e.g. Gaussian vs EmpCov), same θ₀ and subspace.

    With `settings.prior_fraction > 0` each prior also trains its own θ₀ (a MAP fit on the
    prior split), so the comparison covers full networks trained under each prior.
    """
    if not regularisers:
        raise ValueError("give at least one regulariser (name -> prior, or None for none)")
    return {
        name: bound_model(
            model,
            x,
            y,
            settings,
            regulariser=prior,
            x_test=x_test,
            y_test=y_test,
            progress=progress,
        )
        for name, prior in regularisers.items()
    }


def reports_table(reports: Mapping[str, BoundReport]) -> pd.DataFrame:
    """One row per report: errors, d, bits, KL, the three bounds and wall time."""
    rows = []
    for name, r in reports.items():
        rows.append(
            {
                "regulariser": name,
                "train_error": r.train_error,
                "test_error": r.test_error,
                "d": r.intrinsic_dim,
                "message_bits": r.code.message_bits,
                "kl_nats": r.kl,
                "catoni": r.catoni,
                "occam": r.occam,
                "mcallester": r.mcallester,
                "seconds": r.wall_seconds,
            }
        )
    return pd.DataFrame(rows).set_index("regulariser")
