"""MAP vs HMC with a Gaussian prior vs HMC with the EmpCov prior, under a Gaussian-noise sweep."""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
import pandas as pd

from bnn_shift.attention import LayerNorm
from bnn_shift.data import DataNotFoundError, Dataset, load_dataset
from bnn_shift.data.registry import LOADERS
from bnn_shift.experiments.run_dir import (
    CHAINS_DIR,
    RunRecord,
    posterior_path,
    resumable_methods,
    stale_posteriors,
)
from bnn_shift.experiments.settings import Rule, check_fields
from bnn_shift.inference import (
    Posterior,
    adjusted_mclmc,
    default_trajectory_length,
    hmc,
    mala,
    map_fit,
    mclmc,
    mile,
    swag,
)
from bnn_shift.inference.chains import KEEP_RULES
from bnn_shift.inference.checkpoint import OtherRunError
from bnn_shift.inference.convergence import max_rhat
from bnn_shift.inference.ensemble import member_seeds
from bnn_shift.inference.kernel import DEFAULT_STEP_JITTER
from bnn_shift.inference.laplace import METHODS as LAPLACE_PREDICTIVES
from bnn_shift.inference.laplace import laplace
from bnn_shift.inference.likelihood import PRECISIONS
from bnn_shift.models import MLP, AttentionClassifier, LeNet5, partition_params
from bnn_shift.priors import PRIORS, ByPath, Gaussian, Prior, by_path, make_prior
from bnn_shift.shift import evaluate, noise_sweep, plot_metric_vs_severity
from bnn_shift.shift.corruptions import corruption_shifts
from bnn_shift.typing import PyTree

MODELS = ("mlp", "lenet", "attention")
MCLMC_SAMPLERS = {"mclmc": mclmc, "adjusted_mclmc": adjusted_mclmc}
SAMPLERS = ("hmc", "hmc_adapted", "mala", "mclmc", "adjusted_mclmc", "mile")
# post-hoc baselines from the MAP fit: name -> Laplace (subset, hessian), or SWAG
LAPLACE = {
    "laplace-last-layer": ("last_layer", "full"),
    "laplace-kron": ("all", "kron"),
    "laplace-diag": ("all", "diag"),
}
BASELINES = ("swag", "multiswag", *LAPLACE)
CORRUPTION_BENCHMARKS = ("mnist-c", "cifar10-c")
GAIN_PRIOR_SCALE = 1.0  # LayerNorm gains start at 1: one prior std from 0 (not ten, as at 0.1)


@dataclass
class ComparePriorsConfig:
    """Every setting of a compare-priors run (written next to its results)."""

    dataset: str = "auto"  # "mnist", "digits", or "auto" (MNIST if obtainable, else digits)
    data_dir: str | None = None
    n_train: int | None = 2000  # stratified subset; None = the whole training set
    n_test: int | None = 2000
    model: str = "mlp"  # "mlp" (hidden widths below), "lenet" (LeNet-5) or "attention"
    hidden: tuple[int, ...] = (256, 256)
    # model="attention": AttentionClassifier (patch embedding, transformer blocks, mean pool)
    patch_size: int = 7
    attention_width: int = 32
    attention_heads: int = 4
    attention_depth: int = 1
    scorer: str = "standard"  # standard, dense, btt, bilinear_mlr (default options)
    structure: str = "full"  # full or mlr (ranks: half the head dim, then halving)
    gain_prior_scale: float = GAIN_PRIOR_SCALE  # attention: N(0, s^2) on the LayerNorm gains
    sampler: str = "hmc"  # the full-batch engine run per prior: one of SAMPLERS
    priors: tuple[str, ...] = ("gaussian", "empcov")  # one HMC run per bnn_shift.priors.PRIORS name
    include_map: bool = True  # also fit MAP with the Gaussian prior
    baselines: tuple[str, ...] = ()  # from MAP fits: BASELINES (swag, laplace-kron, ...)
    baseline_prior: str = "gaussian"  # the prior of MAP and the baselines (a PRIORS name)
    swag_epochs: int = 20  # SGD epochs of SWAG (iterates collected over the second half)
    swag_learning_rate: float = 1e-2  # SWAG's constant SGD learning rate (mean-loss units)
    swag_batch_size: int = 100
    swag_members: int = 3  # MultiSWAG: SWAG runs from this many MAP fits
    laplace_predictive: str = "mc"  # Laplace baselines predict by: mc (32 draws), glm or probit
    prior_scale: float = 0.1  # sigma of the Gaussian prior; the others are matched to it
    empcov_eps: float = 1e-8  # EmpCov prior variance along directions the data never varies in
    step_size: float | str = 1e-3  # or "auto": dual averaging to 0.8 acceptance
    step_jitter: float = DEFAULT_STEP_JITTER  # step * U(1 -+ j) per trajectory; 0 = fixed
    keep: str = "all"  # post-burn-in states averaged: "all" (correct) or "accepted" (the paper's)
    n_chains: int = 2  # R-hat needs >= 2
    precision: str = "float32"  # leapfrog matmuls: float32, tensorfloat32 or bfloat16
    n_iterations: int = 20
    n_burnin: int = 5
    trajectory_length: float | None = None  # default (pi/2) * prior_scale
    map_epochs: int = 1000
    map_learning_rate: float = 1e-3
    map_batch_size: int | None = None  # None = full batch
    noise_stds: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
    corruptions: str | None = None  # also score on "mnist-c" / "cifar10-c" (release severities)
    seed: int = 0

    def __post_init__(self):
        check_config(self)
        unknown = [p for p in (*self.priors, self.baseline_prior) if p not in PRIORS]
        if unknown:
            raise ValueError(f"unknown priors {unknown}; choose from {', '.join(PRIORS)}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose from {', '.join(MODELS)}")
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"unknown baselines {unknown}; choose from {', '.join(BASELINES)}")
        if not self.priors and not self.include_map and not self.baselines:
            raise ValueError("nothing to fit: give at least one prior or include MAP")

    @property
    def methods(self) -> tuple[str, ...]:
        """Method names in fitting order: "map", the baselines, then "<sampler>-<prior>" per
        prior."""
        samplers = tuple(f"{self.sampler}-{p}" for p in self.priors)
        return ("map",) * self.include_map + tuple(self.baselines) + samplers

    @classmethod
    def paper(cls, **overrides) -> ComparePriorsConfig:
        """The covariate-shift paper's MNIST MLP settings (hours on a CPU), its sampler's fixed
        trajectory and averaging of accepted states included (the latter widens the draws)."""
        settings = dict(
            dataset="mnist",
            n_train=None,
            n_test=None,
            step_size=1e-5,
            n_iterations=100,
            n_burnin=10,
            map_epochs=100,
            map_batch_size=80,
            map_learning_rate=6e-3,
            step_jitter=0.0,
            keep="accepted",
        )
        return cls(**{**settings, **overrides})


@dataclass
class ComparePriorsResult:
    config: ComparePriorsConfig
    dataset: str
    n_train: int  # training examples actually used
    n_test: int
    table: pd.DataFrame  # tidy: method, shift, severity, metric, value
    posteriors: dict[str, Posterior] = field(default_factory=dict)
    corruption_table: pd.DataFrame | None = None  # the same, per corruption (config.corruptions)

    def accuracy_table(self) -> pd.DataFrame:
        """Accuracy with severities as rows and methods as columns."""
        acc = self.table[self.table.metric == "accuracy"]
        return acc.pivot_table(index="severity", columns="method", values="value")[
            list(self.posteriors)
        ]


# Range rules beyond the types the fields declare: name -> (test, what the value must be).
POSITIVE = (lambda v: v > 0, "> 0")
COUNT = (lambda v: v >= 1, ">= 1")
RULES: dict[str, Rule] = {
    "dataset": (lambda v: v == "auto" or v.lower() in LOADERS, f"auto or one of {list(LOADERS)}"),
    **dict.fromkeys(("n_train", "n_test", "patch_size", "attention_width"), COUNT),
    **dict.fromkeys(("attention_heads", "attention_depth", "swag_epochs"), COUNT),
    **dict.fromkeys(("swag_batch_size", "swag_members", "n_chains", "n_iterations"), COUNT),
    **dict.fromkeys(("map_epochs", "map_batch_size"), COUNT),
    "hidden": (lambda v: all(h >= 1 for h in v), "widths >= 1"),
    **dict.fromkeys(("gain_prior_scale", "swag_learning_rate", "prior_scale"), POSITIVE),
    **dict.fromkeys(("empcov_eps", "trajectory_length", "map_learning_rate"), POSITIVE),
    "step_size": (lambda v: v == "auto" or (not isinstance(v, str) and v > 0), '> 0 or "auto"'),
    "step_jitter": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "keep": (lambda v: v in KEEP_RULES, f"one of {KEEP_RULES}"),
    "laplace_predictive": (lambda v: v in LAPLACE_PREDICTIVES, f"one of {LAPLACE_PREDICTIVES}"),
    "precision": (lambda v: v in PRECISIONS, f"one of {PRECISIONS}"),
    "n_burnin": (lambda v: v >= 0, ">= 0 (and < n_iterations)"),
    "noise_stds": (lambda v: len(v) > 0 and all(s >= 0 for s in v), "one or more stds >= 0"),
    "corruptions": (lambda v: v in CORRUPTION_BENCHMARKS, f"one of {CORRUPTION_BENCHMARKS}"),
    "seed": (lambda v: v >= 0, ">= 0"),
}


def check_config(config: ComparePriorsConfig) -> None:
    """Every setting's type and range (`settings.check_fields`), before any work."""
    check_fields(config, RULES)
    if config.n_burnin >= config.n_iterations:
        raise ValueError(
            f"n_burnin is {config.n_burnin}, not below n_iterations={config.n_iterations}: no "
            "iteration would be kept; lower n_burnin or raise n_iterations"
        )


def settings_for_methods(methods: Sequence[str]) -> dict[str, Any]:
    """The include_map / baselines / sampler / priors settings that fit exactly `methods`:
    "map", baseline names (BASELINES), a sampler name (SAMPLERS; with the configured priors) or
    "<sampler>-<prior>"; one sampler per comparison."""
    include_map, baselines, samplers, priors = False, [], [], []
    for method in methods:
        sampler, _, prior = method.partition("-")
        if method == "map":
            include_map = True
        elif method in BASELINES:
            baselines.append(method)
        elif method in SAMPLERS:
            samplers.append(method)
        elif sampler in SAMPLERS and prior in PRIORS:
            samplers.append(sampler)
            priors.append(prior)
        else:
            raise ValueError(
                f"unknown method {method!r}: use map, {', '.join(BASELINES)}, a sampler "
                f"({', '.join(SAMPLERS)}) or <sampler>-<prior> with a prior from "
                f"{', '.join(PRIORS)}"
            )
    if len(set(samplers)) > 1:
        raise ValueError(
            f"one sampler per comparison, got {sorted(set(samplers))}; run compare-priors once "
            "per sampler (--out to separate directories)"
        )
    settings: dict[str, Any] = {"include_map": include_map, "baselines": tuple(baselines)}
    if samplers:
        settings["sampler"] = samplers[0]
    if priors or not samplers:
        settings["priors"] = tuple(priors)
    return settings


def load_data(config: ComparePriorsConfig) -> Dataset:
    """The configured dataset, subset; "auto" falls back to digits when MNIST is unobtainable."""
    name = config.dataset
    kwargs = {"data_dir": config.data_dir} if config.data_dir else {}
    if name == "auto":
        try:
            data = load_dataset("mnist", **kwargs)
        except DataNotFoundError as err:
            warnings.warn(
                f"MNIST unavailable ({err}); running on scikit-learn digits", stacklevel=2
            )
            data = load_dataset("digits")
    else:
        data = load_dataset(name, **kwargs) if name == "mnist" else load_dataset(name)
    n_train = None if config.n_train is None else min(config.n_train, len(data.y_train))
    n_test = None if config.n_test is None else min(config.n_test, len(data.y_test))
    return data.subset(n_train, n_test, seed=config.seed)


def initial_model(config: ComparePriorsConfig, data: Dataset) -> PyTree:
    """The initial network, the same for every method."""
    key = jax.random.key(config.seed)
    if config.model == "mlp":
        return MLP(data.n_features, config.hidden, data.n_classes, key=key)
    height, _, channels = data.image_shape
    if config.model == "attention":
        return attention_classifier(config, channels, data.n_classes, height, key)
    return LeNet5(channels, data.n_classes, image_size=height, key=key)


def attention_classifier(
    config: ComparePriorsConfig, channels: int, n_classes: int, image_size: int, key: jax.Array
) -> AttentionClassifier:
    """The configured attention classifier; bilinear MLR and sequence MLR get level ranks of
    half the head dim, then halving (e.g. 4|2|1|1 at head dim 8)."""
    head_dim = config.attention_width // config.attention_heads
    ranks = level_ranks(head_dim)
    scorer_options = {"ranks": ranks} if config.scorer == "bilinear_mlr" else {}
    structure_options = {"ranks": ranks} if config.structure == "mlr" else {}
    return AttentionClassifier(
        channels,
        n_classes,
        image_size=image_size,
        patch_size=config.patch_size,
        d_model=config.attention_width,
        n_heads=config.attention_heads,
        depth=config.attention_depth,
        key=key,
        scorer=config.scorer,
        structure=config.structure,
        scorer_options=scorer_options,
        structure_options=structure_options,
    )


def level_ranks(head_dim: int) -> tuple[int, ...]:
    """head_dim/2, head_dim/4, ..., down to 1, then the remainder: 8 -> (4, 2, 1, 1)."""
    ranks = []
    while head_dim - sum(ranks) > 1 and head_dim // 2 ** (len(ranks) + 1) >= 1:
        ranks.append(head_dim // 2 ** (len(ranks) + 1))
    return (*ranks, head_dim - sum(ranks))


def fit_method(
    method: str,
    config: ComparePriorsConfig,
    data: Dataset,
    progress: bool,
    fitted: dict[str, Posterior] | None = None,
    chains_dir: Path | None = None,
) -> Posterior:
    """Fit "map", a baseline or "<sampler>-<prior>" from the same initial network; baselines
    start from fitted["map"] when the comparison has fitted it already. Samplers checkpoint
    into chains_dir/<method> when given: a rerun resumes them, a longer one extends them."""
    model = initial_model(config, data)
    trajectory_length = config.trajectory_length
    baseline = method == "map" or method in BASELINES
    name = config.baseline_prior if baseline else method.removeprefix(f"{config.sampler}-")
    prior = make_prior(name, model, data.x_train, config.prior_scale, config.empcov_eps)
    if config.model == "attention":
        # the gain rule must not stretch the default trajectory, (pi/2) * the weights' scale
        trajectory_length = trajectory_length or default_trajectory_length(prior)
        prior = with_gain_prior(prior, config.gain_prior_scale)
    if method == "map":
        return baseline_map(model, prior, config, data, progress)
    if method == "swag" or method in LAPLACE:  # they start at the MAP fit, made once
        mapped = (fitted or {}).get("map") or baseline_map(model, prior, config, data, progress)
        model = finished(mapped, f"the MAP fit {method} starts from").draw(0)
    if method in LAPLACE:
        subset, hessian = LAPLACE[method]
        return laplace(
            model, prior, data.x_train, data.y_train,
            subset=subset, hessian=hessian, fit_map=False, seed=config.seed,
            predictive=config.laplace_predictive,
        )  # fmt: skip
    if method in BASELINES:
        return fit_swag(method, model, prior, config, data, progress)
    chains = {
        "step_size": config.step_size,
        "keep": config.keep,
        "n_iterations": config.n_iterations,
        "n_burnin": config.n_burnin,
        "seed": config.seed,
        "n_chains": config.n_chains,
        "eval_sets": {"test": (data.x_test, data.y_test)},
        "trace_pointwise": ("test",),
        "progress": progress,
        "run_dir": None if chains_dir is None else chains_dir / method,
    }
    if config.sampler == "mala":
        return mala(model, prior, data.x_train, data.y_train, **chains)
    if config.sampler in MCLMC_SAMPLERS:
        # their own step (other units than HMC's), tuned from a prior draw: the network's
        # initialisation is far outside an EmpCov prior, where the tuner's step collapses
        chains = chains | {"step_size": "auto", "init": "prior"}
        del chains["keep"]
        return MCLMC_SAMPLERS[config.sampler](model, prior, data.x_train, data.y_train, **chains)
    if config.sampler == "mile":  # one MCLMC chain from each of n_chains MAP fits
        members = {"n_members": chains.pop("n_chains"), "step_size": "auto"}
        del chains["keep"]
        return mile(model, prior, data.x_train, data.y_train, **chains | members)
    return hmc(
        model,
        prior,
        data.x_train,
        data.y_train,
        adapt_mass=config.sampler == "hmc_adapted",
        step_jitter=config.step_jitter,
        trajectory_length=trajectory_length,
        precision=config.precision,
        **chains,
    )


def fit_map(
    model: PyTree,
    prior: Prior,
    config: ComparePriorsConfig,
    data: Dataset,
    progress: bool,
    whiten_first_layer: bool = False,
) -> Posterior:
    """MAP from `model` with the configured optimiser settings (`map_fit`'s whitening)."""
    return map_fit(
        model,
        prior,
        data.x_train,
        data.y_train,
        n_epochs=config.map_epochs,
        learning_rate=config.map_learning_rate,
        batch_size=config.map_batch_size,
        optimizer="adam" if config.map_batch_size is None else "sgd",
        seed=config.seed,
        progress=progress,
        whiten_first_layer=whiten_first_layer,
    )


def baseline_map(
    model: PyTree, prior: Prior, config: ComparePriorsConfig, data: Dataset, progress: bool
) -> Posterior:
    """MAP under the baselines' prior: from `model` for the Gaussian (the main job's); for any
    other prior from a draw of it, in its whitened coordinates (`map_from_prior_draw`)."""
    if config.baseline_prior == "gaussian":
        return fit_map(model, prior, config, data, progress)
    return map_from_prior_draw(model, prior, config, data, progress)


def map_from_prior_draw(
    model: PyTree, prior: Prior, config: ComparePriorsConfig, data: Dataset, progress: bool
) -> Posterior:
    """MAP started at a draw of `prior` (seed config.seed) and optimised in its whitened
    coordinates: a network initialisation lies far off a dense EmpCov first layer's support,
    whose directions of prior sd sqrt(eps) Adam does not settle along in the weights' own."""
    params, static = partition_params(model)
    start = eqx.combine(prior.sample(jax.random.key(config.seed), params), static)
    return fit_map(start, prior, config, data, progress, whiten_first_layer=True)


def fit_swag(
    method: str,
    map_model: PyTree,
    prior: Prior,
    config: ComparePriorsConfig,
    data: Dataset,
    progress: bool,
) -> Posterior:
    """SWAG from `map_model` (the MAP fit of the initial network), or MultiSWAG from the MAP
    fits of swag_members networks initialised with seeds member_seeds(seed, swag_members)."""
    if method == "swag":
        starts = [map_model]
    else:
        inits = [
            initial_model(dataclasses.replace(config, seed=s), data)
            for s in member_seeds(config.seed, config.swag_members)
        ]
        what = f"a MAP fit {method} starts from"
        fits = [baseline_map(m, prior, config, data, progress) for m in inits]
        starts = [finished(fit, what).draw(0) for fit in fits]
    return swag(
        starts if method == "multiswag" else starts[0],
        prior,
        data.x_train,
        data.y_train,
        learning_rate=config.swag_learning_rate,
        n_epochs=config.swag_epochs,
        batch_size=min(config.swag_batch_size, len(data.y_train)),
        seed=config.seed,
        progress=progress,
        whiten_first_layer=True,  # a no-op unless the prior has a dense EmpCov first layer
    )


def finished(posterior: Posterior, what: str) -> Posterior:
    """`posterior`, unless Ctrl-C cut its fit short: then stop (a fit that other fits start
    from is not saved on its own)."""
    if posterior.attrs.get("interrupted"):
        raise KeyboardInterrupt(f"interrupted while fitting {what}")
    return posterior


def with_gain_prior(prior: Prior, gain_scale: float = GAIN_PRIOR_SCALE) -> ByPath:
    """`prior` with every LayerNorm gain under N(0, gain_scale^2) instead.

    The gains of an attention model start at 1. Under the weights' N(0, 0.1^2) each HMC
    trajectory (a quarter period of that prior) pulls them to ~0.1, the normalised network's
    output goes flat, and the chain sits at chance with its likelihood gradient gone.
    """
    rules = dict(zip(prior.patterns, prior.priors)) if isinstance(prior, ByPath) else {"*": prior}
    return by_path({**rules, LayerNorm: Gaussian(gain_scale)})


def compare_priors(
    config: ComparePriorsConfig,
    out_dir: str | Path | None = None,
    progress: bool = True,
    resume: bool = True,
) -> ComparePriorsResult:
    """Fit every configured method, evaluate under the noise sweep, and write results to out_dir:
    each method's posterior as soon as it is fitted, config.json recording the run's progress
    (`run_dir.RunRecord`), the tables and plots at the end. Ctrl-C stops the comparison (a
    KeyboardInterrupt) after saving what was done; the run is then recorded as interrupted.
    With `resume`, methods that an earlier run of the same settings into out_dir saved whole are
    loaded instead of fitted again, and the samplers' chains continue from their checkpoints
    in out_dir/chains (a larger n_iterations extends them); `resume=False` starts afresh."""
    data = load_data(config)
    out = None if out_dir is None else Path(out_dir)
    record = RunRecord(run_settings(config, data.name, len(data.y_train), len(data.y_test)))
    saved_before = resumable_methods(out, record.settings) if out is not None and resume else []
    chains_dir = None if out is None else out / CHAINS_DIR
    if out is not None:
        warn_stale(out, config.methods)
        if not resume:
            shutil.rmtree(chains_dir, ignore_errors=True)
        record.write(out)
    posteriors: dict[str, Posterior] = {}
    try:
        for method in config.methods:
            if method in saved_before:
                posteriors[method] = reuse_saved(out, method, initial_model(config, data), record)
                continue
            posteriors[method] = fit_afresh_if_other_run(
                method, config, data, progress, posteriors, chains_dir
            )
            saved = None if out is None else record.save(out, method, posteriors[method])
            if posteriors[method].attrs.get("interrupted"):
                where = "" if saved is None else f"; its draws so far are in {saved} (partial)"
                raise KeyboardInterrupt(f"interrupted while fitting {method}{where}")
        table = evaluate(
            posteriors, data, noise_sweep(config.noise_stds, seed=config.seed), progress=progress
        )
        corrupted = None
        if config.corruptions is not None:
            shifts = corruption_shifts(data, config.corruptions, seed=config.seed)
            corrupted = evaluate(posteriors, data, shifts, progress=progress)
    except BaseException as err:
        if out is not None:
            stopped = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            record.finish(out, stopped, " ".join(str(err).split()) or type(err).__name__)
        raise
    result = ComparePriorsResult(
        config, data.name, len(data.y_train), len(data.y_test), table, posteriors, corrupted
    )
    if out is not None:
        write_tables(result, out)
        record.finish(out, "complete")
    return result


def fit_afresh_if_other_run(
    method: str,
    config: ComparePriorsConfig,
    data: Dataset,
    progress: bool,
    fitted: dict[str, Posterior],
    chains_dir: Path | None,
) -> Posterior:
    """`fit_method`, resuming the method's chains in chains_dir; chains an earlier run with
    other settings left there are removed (with a warning) and the fit starts afresh."""
    try:
        return fit_method(method, config, data, progress, fitted, chains_dir)
    except OtherRunError as err:
        warnings.warn(
            f"{err.path.parent} holds {method} chains of an earlier run with other settings "
            f"({err.difference}); starting them afresh",
            stacklevel=3,
        )
        shutil.rmtree(chains_dir / method)
        return fit_method(method, config, data, progress, fitted, chains_dir)


def reuse_saved(out: Path, method: str, model_like: PyTree, record: RunRecord) -> Posterior:
    """The posterior of `method` an earlier run of the same settings saved in `out`, recorded as
    done in this run."""
    path = posterior_path(out, method)
    print(f"{method}: resuming from {path}, fitted by an earlier run with the same settings")
    record.done.append(method)
    record.write(out)
    return Posterior.load(path, model_like)


def run_settings(config: ComparePriorsConfig, dataset: str, n_train: int, n_test: int) -> dict:
    """config.json's settings: the config and what "auto" and the subset sizes resolved to."""
    resolved = {"dataset": dataset, "n_train": n_train, "n_test": n_test}
    return {**dataclasses.asdict(config), "resolved": resolved}


def warn_stale(out: Path, methods: Sequence[str]) -> None:
    """Say so when `out` holds posteriors an earlier run fitted and this one will not."""
    stale = stale_posteriors(out, methods)
    if stale:
        warnings.warn(
            f"{out} holds posteriors of an earlier run ({', '.join(p.name for p in stale)}) that "
            "this run does not fit; they are left alone, and evaluate ignores them",
            stacklevel=3,
        )


def write_results(result: ComparePriorsResult, out: Path) -> None:
    """A complete run directory: one netCDF posterior per method, config.json, metrics.csv,
    accuracy.png and summary.json."""
    record = RunRecord(run_settings(result.config, result.dataset, result.n_train, result.n_test))
    for method, posterior in result.posteriors.items():
        record.save(out, method, posterior)
    write_tables(result, out)
    record.finish(out, "complete")


def write_tables(result: ComparePriorsResult, out: Path) -> None:
    """metrics.csv, accuracy.png and summary.json of a finished comparison."""
    out.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(out / "metrics.csv", index=False)
    if result.corruption_table is not None:
        corrupted = out / f"metrics-{result.config.corruptions}.csv"
        result.corruption_table.to_csv(corrupted, index=False)
    fig = plot_metric_vs_severity(result.table, metric="accuracy")
    fig.axes[0].set_xlabel("Gaussian noise std (normalised pixel units)")
    fig.axes[0].set_title(f"{result.dataset}: accuracy under input noise")
    fig.savefig(out / "accuracy.png", dpi=120, bbox_inches="tight")
    summary = {
        method: {
            "acceptance_rate": acceptance_rate(p),
            "n_draws": p.n_draws,
            "r_hat": max_rhat(p.attrs),
            "converged": p.attrs.get("converged"),
            "convergence": p.attrs.get("convergence"),
            "seconds": p.attrs.get("seconds"),
            "log_marginal_likelihood": p.attrs.get("log_marginal_likelihood"),  # Laplace
        }
        for method, p in result.posteriors.items()
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def acceptance_rate(posterior: Posterior) -> float | None:
    """Mean post-burn-in acceptance rate of a sampler's posterior; None for MAP."""
    stats = posterior.stats
    if "mh" not in stats or not stats["mh"].any():
        return None
    return float(np.mean(stats["acceptance_rate"][stats["mh"]]))
