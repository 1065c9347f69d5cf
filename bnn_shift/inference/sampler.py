"""`hmc(...)`: full-batch HMC for classifiers, any number of chains, data split over devices."""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh

from bnn_shift.data.cache import array_digest
from bnn_shift.inference.adaptive_hmc import AdaptiveHMC
from bnn_shift.inference.chains import (
    ChainRun,
    FullBatchSampler,
    check_count,
    check_eval_labels,
    no_draws_reason,
    run_chains,
)
from bnn_shift.inference.convergence import check_convergence
from bnn_shift.inference.ensemble import deep_ensemble
from bnn_shift.inference.kernel import (
    DEFAULT_STEP_JITTER,
    HMC,
    check_step_jitter,
    default_trajectory_length,
    n_leapfrog_steps,
)
from bnn_shift.inference.likelihood import (
    CATEGORICAL,
    Likelihood,
    check_inputs,
)
from bnn_shift.inference.posterior import Posterior, empty_draws, stack_draws
from bnn_shift.inference.sharding import make_mesh, place_chains, place_data, replicate
from bnn_shift.inference.target import Data, Target, make_target
from bnn_shift.inference.tuning import (
    CHECK_TRAJECTORIES,
    check_not_stiff,
    check_tuning,
    stable_step_size,
    tune_step_size,
)
from bnn_shift.inference.whitening import find_whitening, whitened_positions
from bnn_shift.models.params import param_paths
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree

INITS = ("model", "prior", "ensemble")
# init="ensemble": members fitted as compare-priors' MAP (full-batch Adam, cosine learning rate)
ENSEMBLE_INIT = {"n_epochs": 1000, "learning_rate": 1e-3}
MIN_ADAPTATION = 150  # warmup iterations Stan's window schedule needs (its default buffers)
INIT_STREAM = 2**31 - 1  # fold_in index for initial draws, disjoint from iteration indices
TUNE_STREAM = 2**31 - 2  # fold_in index for step-size tuning
TUNE_N_STEPS = 10  # leapfrogs per tuning trajectory
# sample_chains' settings, which an engine's fit function passes through
RUN_SETTINGS = (
    "n_iterations", "n_burnin", "thin", "keep", "keep_draws", "run_dir", "trace_params",
    "trace_pointwise", "progress", "iterations_per_call",
)  # fmt: skip


def hmc(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    step_size: float | str = "auto",
    step_jitter: float = DEFAULT_STEP_JITTER,
    n_iterations: int = 100,
    n_burnin: int = 10,
    trajectory_length: float | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    n_chains: int = 1,
    init: str | Posterior = "model",
    eval_sets: Mapping[str, np.ndarray | tuple[np.ndarray, np.ndarray]] | None = None,
    thin: int = 1,
    keep: str = "all",
    keep_draws: bool = True,
    run_dir: str | Path | None = None,
    devices: Sequence[jax.Device] | None = None,
    precision: str = "float32",
    trace_params: Sequence[str] = (),
    trace_pointwise: Sequence[str] = (),
    whiten_first_layer: bool = True,
    adapt_mass: bool = False,
    adapt_step: bool = False,
    max_leapfrogs: int | None = None,
    max_steps: int = 100_000,
    target_acceptance: float = 0.8,
    n_tune: int = 50,
    progress: bool = True,
    likelihood: str | Likelihood = "categorical",
    iterations_per_call: int | None = None,
) -> Posterior:
    """Full-batch HMC: burn-in without MH (diverging proposals still refused), then MH; every
    post-burn-in state (a rejection repeats the current one) enters the model average.

    The target is the tempered posterior (likelihood * prior)^(1/T): a direction the data never
    vary in keeps sqrt(T) times its prior sd.

    model: equinox model (one example -> the likelihood's outputs); chains start at its parameters
        (init="model"), each at its own prior draw (init="prior"), at the members of a deep
        ensemble (init="ensemble") or at a given Posterior's draws (see `prepare_chains`).
    x (n, ...), y (n,): the whole training set; every leapfrog step sees all of it, split over
        `devices` (default: all) on the batch axis; chains are split over devices too when
        their number shares a factor with the device count.
    step_size: leapfrog step, or "auto": dual averaging to `target_acceptance` over `n_tune`
        short trajectories from chain 0's start (`tune_step_size`), then halved until a few
        full-length trajectories do not diverge (`stable_step_size`); the result is in attrs.
    step_jitter: each trajectory's step is step_size * U(1 - j, 1 + j) with the number of
        leapfrog steps fixed, so no direction's oscillation stays in phase with the trajectory
        (which would freeze it); 0 = the paper's fixed trajectory.
    trajectory_length: defaults to (pi/2) * prior.trajectory_scale * sqrt(T) (nominal step).
    eval_sets: name -> inputs (m, ...) or (inputs, labels): model-average probabilities are
        kept running; labelled sets are also traced per iteration for diagnostics.
    thin: keep every thin-th post-burn-in draw (all enter the running averages).
    keep: "all" post-burn-in states (correct), or "accepted" only, as the paper's code averaged:
        that weights each state by its chance of being left and widens the draws (~10% in sd at
        acceptance 0.4); for reproducing the paper only.
    run_dir: checkpoint after every iteration and stream kept draws there; calling again with
        the same run_dir resumes (a larger n_iterations extends the run).
    trace_params: dotted paths of (small) parameters, e.g. "layers.2.bias", recorded at every
        iteration next to the function-space trace, for weight-space diagnostics.
    trace_pointwise: names of labelled eval sets whose per-point log predictive is traced per
        iteration (n_iterations, n_chains, m): per-point function-space R-hat
        (attrs["pointwise_rhat"]) and `bnn-shift diagnose` use it.
    whiten_first_layer: run a dense EmpCov first layer in whitened coordinates (the same
        chain; see `prepare_chains`).
    adapt_mass: adapt a diagonal mass matrix (on the prior-whitened coordinates) and the step
        size over the n_burnin iterations, Stan's windows, MH test throughout
        (`adaptive_hmc.py`); step_size is then the starting point, attrs["step_size"] the
        adapted mean.
    adapt_step: adapt the step size alone over the n_burnin iterations (dual averaging to
        target_acceptance, MH test throughout, so the burn-in cannot carry the chain where the
        starting step diverges); implied by adapt_mass.
    max_leapfrogs: shorten a trajectory that needs more leapfrogs of the (tuned or adapted)
        step than this to that many (each iteration moves less and costs at most max_leapfrogs
        gradients; the chain stays exact); attrs then record the (mean) shortened
        trajectory_length. None: the full trajectory, refused when it needs more than max_steps
        leapfrogs.
    precision: matmul precision of the leapfrog gradients ("float32", "tensorfloat32",
        "bfloat16"); the accept test always uses float32, so the chain targets the same posterior.
    likelihood: "categorical" (classifier logits), "gaussian" or a `Likelihood` such as
        gaussian_likelihood(noise_std) for regression; eval-set predictions are then means, and
        labelled eval sets (traced as accuracies) need "categorical".
    iterations_per_call: iterations per compiled call and per checkpoint; default: adapted to
        take about 2 s a call (up to 100 for small models, where per-call overhead dominates; 1
        for slow iterations, which keep their progress bar, Ctrl-C and checkpoints). The chain
        is the same whatever it is.
    With n_chains >= 2, function-space R-hat and ESS are computed (attrs["convergence"]) and a
    warning is raised when any R-hat exceeds 1.1.
    Interrupting (Ctrl-C) returns the posterior drawn so far, with attrs["interrupted"] True.
    """
    _check_run(n_iterations, n_burnin, thin, iterations_per_call)
    check_step_jitter(step_jitter)
    problem = prepare_chains(
        model, prior, x, y,
        likelihood=likelihood, temperature=temperature, precision=precision,
        n_chains=n_chains, init=init, seed=seed, devices=devices, eval_sets=eval_sets,
        whiten_first_layer=whiten_first_layer,
    )  # fmt: skip
    target = problem.target
    tau = (
        default_trajectory_length(prior, temperature)
        if trajectory_length is None
        else trajectory_length
    )

    adaptive = adapt_mass or adapt_step
    if max_leapfrogs is not None:
        check_count("max_leapfrogs", max_leapfrogs)
    if adaptive and n_burnin < 1:
        raise ValueError(
            "adapt_step and adapt_mass adapt over the burn-in: pass n_burnin >= 1 (tens of "
            f"iterations for the step, >= {MIN_ADAPTATION} for the mass), got {n_burnin}"
        )

    def leapfrogs(step_size: float) -> int:
        if max_leapfrogs is None:
            return n_leapfrog_steps(tau, step_size, max_steps)
        return min(n_leapfrog_steps(tau, step_size, math.inf), max_leapfrogs)

    def make_engine(step_size: float, n_steps: int | None = None) -> HMC:
        n_steps = n_steps or leapfrogs(step_size)
        return HMC.for_target(
            target, problem.params, step_size=step_size, n_steps=n_steps, step_jitter=step_jitter
        )

    tuning = {}
    if isinstance(step_size, str):
        if step_size != "auto":
            raise ValueError(f'step_size must be a positive number or "auto", got {step_size!r}')
        step_size, tuning = _auto_step_size(
            make_engine, leapfrogs, problem, tau, seed, n_tune, target_acceptance, max_steps
        )
    n_steps = leapfrogs(step_size)  # checks the step size too
    if not adaptive:
        engine = make_engine(step_size, n_steps)
    else:
        if adapt_mass and n_burnin < MIN_ADAPTATION:
            warnings.warn(
                f"adapt_mass with n_burnin={n_burnin}: Stan's windows need >= {MIN_ADAPTATION} "
                "warmup iterations to settle the mass matrix and step size; raise n_burnin",
                stacklevel=2,
            )
        engine = AdaptiveHMC.for_target(
            target, problem.params, n_burnin, adapt_mass=adapt_mass, trajectory_length=tau,
            initial_step_size=float(step_size),
            max_steps=min(max_steps, max_leapfrogs or max_steps),
            step_jitter=step_jitter, target_acceptance=target_acceptance,
        )  # fmt: skip
        tuning |= _adaptation_settings(adapt_mass)
    settings = {
        "step_size": step_size,
        "step_jitter": step_jitter,
        "trajectory_length": tau if adaptive else min(tau, n_steps * float(step_size)),
        "n_leapfrog_steps": n_steps,
        "init": describe_init(init),
        "precision": precision,
    } | tuning
    if max_leapfrogs is not None:  # only then: older run dirs resume
        settings["max_leapfrogs"] = max_leapfrogs
    post = sample_chains(
        "hmc", engine, problem, settings,
        n_iterations=n_iterations, n_burnin=n_burnin, seed=seed, thin=thin, keep=keep,
        keep_draws=keep_draws, run_dir=run_dir, trace_params=trace_params,
        trace_pointwise=trace_pointwise, progress=progress, iterations_per_call=iterations_per_call,
    )  # fmt: skip
    if adaptive and post.stats["step_size"][n_burnin:].size:
        sizes, steps = post.stats["step_size"][n_burnin:], post.stats["n_steps"][n_burnin:]
        post.attrs["step_size"] = float(np.mean(sizes))
        post.attrs["n_leapfrog_steps"] = float(np.mean(steps))
        if max_leapfrogs is not None:  # cut trajectories: the length they had on average
            post.attrs["trajectory_length"] = float(np.mean(sizes * steps))
    return post


def _adaptation_settings(adapt_mass: bool) -> dict:
    """The run's record of what its burn-in adapted."""
    if adapt_mass:
        return {"mass_adaptation": "Stan windows over the burn-in: diagonal, prior-whitened"}
    return {"step_adaptation": "dual averaging over the burn-in, MH test throughout"}


class ChainProblem(NamedTuple):
    """A full-batch fit's target and its data, starting points and eval sets, placed on a mesh."""

    target: Target
    params: PyTree  # the model's parameters (one chain, host)
    data: Data  # (x, y, mask) split on the batch axis
    positions: PyTree  # (n_chains, ...) starting points
    eval_sets: dict[str, tuple[jax.Array, np.ndarray | None]]  # name -> (inputs, labels)
    mesh: Mesh
    eval_digests: dict[str, str]  # name -> sha256 of the float32 inputs (matches references)
    init_gradients: int  # full-batch-equivalent gradients spent on the starting points
    settings: dict  # the user's prior; whitened_first_layer: True when it runs whitened


def prepare_chains(
    model: PyTree,
    prior: Prior,
    x,
    y,
    *,
    likelihood: str | Likelihood = "categorical",
    temperature: float = 1.0,
    precision: str = "float32",
    n_chains: int = 1,
    init: str | Posterior = "model",
    seed: int = 0,
    devices: Sequence[jax.Device] | None = None,
    eval_sets: Mapping[str, np.ndarray | tuple[np.ndarray, np.ndarray]] | None = None,
    whiten_first_layer: bool = True,
) -> ChainProblem:
    """Check the data and settings shared by every full-batch sampler and place them.

    init: where chains start: "model" (its parameters), "prior" (a prior draw each),
    "ensemble" (chain c at the MAP fit of member c of a deep ensemble whose members start at
    prior draws, ENSEMBLE_INIT settings), or a Posterior whose first n_chains draws are the
    starts (e.g. your own `deep_ensemble`).
    whiten_first_layer: sample a dense EmpCov first layer in whitened coordinates with the
    inputs rotated once (`whitening.py`: the same chain, leapfrogs at the Gaussian's cost)."""
    _check_problem(n_chains, init)
    target, params, x, y = make_target(
        model, prior, x, y, likelihood=likelihood, temperature=temperature, precision=precision
    )
    checked = _check_eval_sets(eval_sets, x.shape[1:], target, params)  # before any ensemble fit
    mesh = make_mesh(n_chains, devices)
    starts, init_gradients = _initial_positions(
        model, params, prior, n_chains, init, seed, x, y, target.likelihood
    )
    settings = {"prior": prior.describe()}
    found = find_whitening(model, prior, params) if whiten_first_layer else None
    if found is not None:  # same chain, cheaper leapfrogs (whitening.py)
        whitening, whitened_prior = found
        target = dataclasses.replace(target, prior=whitened_prior, whitening=whitening)
        x, starts = whitening.rotate(x), whitened_positions(whitening, starts)
        settings["whitened_first_layer"] = True
    evals = {name: (replicate(xe, mesh), ye) for name, (xe, ye) in checked.items()}
    digests = {name: array_digest(xe) for name, (xe, _) in checked.items()}
    problem = (target, params, place_data(x, y, mesh), place_chains(starts, mesh), evals, mesh)
    return ChainProblem(*problem, digests, init_gradients, settings)


def sample_chains(
    method: str,
    engine: FullBatchSampler,
    problem: ChainProblem,
    settings: dict,
    *,
    seed: int,
    n_iterations: int = 100,
    n_burnin: int = 10,
    thin: int = 1,
    keep: str = "all",
    keep_draws: bool = True,
    run_dir: str | Path | None = None,
    trace_params: Sequence[str] = (),
    trace_pointwise: Sequence[str] = (),
    progress: bool = True,
    iterations_per_call: int | None = None,
) -> Posterior:
    """Run `engine`'s chains from the problem's starting points through `run_chains`; -> the
    Posterior, with function-space R-hat/ESS when there are >= 2 chains. The settings are
    `hmc`'s."""
    _check_run(n_iterations, n_burnin, thin, iterations_per_call)
    target, params = problem.target, problem.params
    state = _init_chains(engine, target, problem.positions, problem.data)
    n_chains = int(state.logdensity.shape[0])
    settings = settings | {
        "temperature": target.temperature,
        "n_train": target.n,
        "thin": thin,
        "keep": keep,
        "likelihood": target.likelihood.describe(),
        **problem.settings,
    }
    started = time.perf_counter()
    run = run_chains(
        engine,
        target,
        state,
        problem.data,
        eval_sets=problem.eval_sets,
        n_iterations=n_iterations,
        n_burnin=n_burnin,
        seed=seed,
        thin=thin,
        keep=keep,
        keep_draws=keep_draws,
        run_dir=None if run_dir is None else Path(run_dir),
        fingerprint=settings | {"method": method, "shapes": _shapes(params)},
        traced_leaves=_leaf_indices(params, trace_params),
        pointwise=tuple(trace_pointwise),
        progress=progress,
        block_length=iterations_per_call,
    )
    attrs = settings | {
        "method": method,
        "n_iterations": run.completed,
        "interrupted": run.interrupted,
        "n_burnin": n_burnin,
        "n_chains": n_chains,
        "seed": seed,
        "n_devices": problem.mesh.devices.size,
        "eval_set_digests": problem.eval_digests,
        "n_init_gradients": problem.init_gradients,
        "input_shape": list(problem.data[0].shape[1:]),
        "seconds": time.perf_counter() - started,
    }
    reason = no_draws_reason(run, n_burnin, keep)
    if reason is not None:
        attrs["no_draws"] = reason
        warnings.warn(f"{method} kept no draws: {reason}", stacklevel=3)
    return check_convergence(_posterior(run, params, target.static, attrs))


_RUN_DEFAULTS = {
    name: p.default for name, p in inspect.signature(sample_chains).parameters.items()
    if name in RUN_SETTINGS
}  # fmt: skip


def split_run_settings(settings: Mapping) -> tuple[dict, dict]:
    """A full-batch sampler's keyword settings -> (`sample_chains`'s, `prepare_chains`'s), the
    run lengths checked first: before an ensemble start or step tuning spends any time."""
    run = {k: v for k, v in settings.items() if k in RUN_SETTINGS}
    lengths = _RUN_DEFAULTS | run
    _check_run(*(lengths[k] for k in ("n_iterations", "n_burnin", "thin", "iterations_per_call")))
    return run, {k: v for k, v in settings.items() if k not in RUN_SETTINGS}


@eqx.filter_jit
def _init_chains(engine: FullBatchSampler, target: Target, positions: PyTree, data: Data):
    return jax.vmap(engine.init, in_axes=(None, 0, None))(target, positions, data)


def _shapes(params: PyTree) -> list[list[int]]:
    return [list(a.shape) for a in jax.tree.leaves(params)]


def _auto_step_size(
    make_engine, leapfrogs, problem: ChainProblem, tau, seed, n_tune, target, max_steps
):
    """Dual-averaged step size from chain 0's start, checked (and halved where needed) on
    trajectories of the real length (`leapfrogs(step)` long); and the attrs that record how,
    with the full-batch gradients the tuning took."""
    initial = tau / 100
    check_tuning(n_tune, target, initial)
    tuner = make_engine(initial, min(TUNE_N_STEPS, max_steps))
    start = jax.tree.map(lambda a: a[0], problem.positions)
    start_state = eqx.filter_jit(tuner.init)(problem.target, start, problem.data)
    key_tune, key_check = jax.random.split(jax.random.fold_in(jax.random.key(seed), TUNE_STREAM))
    found = tune_step_size(
        tuner,
        problem.target,
        start_state,
        problem.data,
        key_tune,
        initial_step_size=initial,
        n_tune=n_tune,
        target_acceptance=target,
    )
    check_not_stiff("hmc", found.step_size, tau, max_steps)
    checked = stable_step_size(
        make_engine,
        problem.target,
        start_state,
        problem.data,
        key_check,
        step_size=found.step_size,
        target_acceptance=target,
    )
    tried = [found.step_size / 2**i for i in range(checked.n_halvings + 1)]
    spent = n_tune * min(TUNE_N_STEPS, max_steps) + sum(
        CHECK_TRAJECTORIES * leapfrogs(step) for step in tried
    )
    return check_not_stiff("hmc", checked.step_size, tau, max_steps), {
        "step_size_tuning": f"dual averaging to acceptance {target} over {n_tune} "
        f"trajectories of {TUNE_N_STEPS} leapfrogs, then halved {checked.n_halvings} times "
        "until full-length trajectories did not diverge",
        "tuning_acceptance_rate": float(found.acceptance_rate[n_tune // 2 :].mean()),
        "check_acceptance_rate": checked.acceptance_rate,
        "n_tuning_gradients": spent,
    }


def _leaf_indices(params: PyTree, names: Sequence[str]) -> dict[str, int]:
    paths = param_paths(params)
    unknown = [n for n in names if n not in paths]
    if unknown:
        raise ValueError(f"trace_params {unknown} are not parameters; parameter paths are {paths}")
    return {name: paths.index(name) for name in names}


def _posterior(run: ChainRun, params: PyTree, static: PyTree, attrs: dict) -> Posterior:
    total = int(run.counts.sum())
    predictions = {
        k: (v.sum(axis=0) / max(total, 1)).astype(np.float32) for k, v in run.sums.items()
    }
    if run.streamed is not None:
        draws, draw_chain = run.streamed
    else:
        draws = stack_draws([p for _, p in run.draws]) if run.draws else empty_draws(params)
        draw_chain = np.asarray([c for c, _ in run.draws], np.int32)
    return Posterior(
        static=static,
        draws=draws,
        draw_chain=draw_chain,
        stats=run.stats,
        trace=run.trace,
        predictions=predictions if total else {},
        attrs=attrs,
    )


def _initial_positions(model, params, prior, n_chains: int, init, seed: int, x, y, likelihood):
    """-> ((n_chains, ...) starting points, gradients spent finding them)."""
    if isinstance(init, Posterior):
        return _draws_as_starts(init, params, n_chains), 0
    if init == "model":
        return jax.tree.map(lambda a: np.broadcast_to(a, (n_chains, *a.shape)), params), 0
    if init == "ensemble":
        static = eqx.partition(model, eqx.is_inexact_array)[1]
        members = deep_ensemble(
            model, prior, x, y, n_members=n_chains, seed=seed, progress=False,
            likelihood=likelihood, init_fn=lambda k: eqx.combine(prior.sample(k, params), static),
            **ENSEMBLE_INIT,
        )  # fmt: skip
        return _draws_as_starts(members, params, n_chains), n_chains * ENSEMBLE_INIT["n_epochs"]
    keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), INIT_STREAM), n_chains)
    return jax.vmap(lambda k: prior.sample(k, params))(keys), 0


def _draws_as_starts(posterior: Posterior, params: PyTree, n_chains: int) -> PyTree:
    """The first n_chains draws of `posterior`, checked against the model's parameters."""
    if posterior.n_draws < n_chains:
        raise ValueError(
            f"init posterior has {posterior.n_draws} draws for {n_chains} chains; fit at least "
            "as many members as chains, or lower n_chains"
        )
    want = [a.shape for a in jax.tree.leaves(params)]
    got = [a.shape[1:] for a in jax.tree.leaves(posterior.draws)]
    if want != got:
        raise ValueError(
            f"init posterior's draws have parameter shapes {got}, the model has {want}: it was "
            "fitted to another architecture"
        )
    return jax.tree.map(lambda d: np.asarray(d[:n_chains]), posterior.draws)


def describe_init(init: str | Posterior) -> str:
    """The `init` setting as recorded in attrs."""
    if isinstance(init, Posterior):
        return f"posterior ({init.attrs.get('method', '?')}, {init.n_draws} draws)"
    return init


def _check_run(n_iterations, n_burnin, thin, iterations_per_call) -> None:
    """Integer run lengths, with at least one iteration after burn-in (burn-in is never kept)."""
    check_count("n_iterations", n_iterations)
    check_count("n_burnin", n_burnin, 0)
    if n_burnin >= n_iterations:
        raise ValueError(
            f"n_burnin={n_burnin} leaves no iteration of n_iterations={n_iterations} to keep "
            "(burn-in is never kept); need 0 <= n_burnin < n_iterations"
        )
    if iterations_per_call is not None:
        check_count("iterations_per_call", iterations_per_call)
    check_count("thin", thin)


def _check_problem(n_chains, init) -> None:
    if n_chains < 1:
        raise ValueError(f"n_chains must be >= 1, got {n_chains=}")
    if not isinstance(init, Posterior) and init not in INITS:
        raise ValueError(f"init must be one of {INITS} or a Posterior, got {init!r}")


def _check_eval_sets(
    eval_sets, feature_shape, target: Target, params: PyTree
) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Eval sets {name: x or (x, y)} checked as the training data are (inputs of the training
    features' shape; labels, categorical models only, as class ids of the model's outputs)."""
    out = {}
    for name, value in (eval_sets or {}).items():
        xe, ye = value if isinstance(value, tuple) else (value, None)
        if ye is not None and target.likelihood != CATEGORICAL:
            raise ValueError(f"eval set {name!r} has labels, which only a categorical model uses")
        xe = check_inputs(name, xe, feature_shape)
        if ye is not None:
            ye = check_eval_labels(name, ye, target, params, xe[:1])
            if len(ye) != len(xe):
                raise ValueError(f"eval set {name!r} has {len(xe)} inputs but {len(ye)} labels")
        out[name] = (xe, ye)
    return out
