"""Figures, in one place: results under shift, why EmpCov works, and sampler diagnostics.

Every function returns a `matplotlib.figure.Figure` and shows nothing; save it with
`fig.savefig(path)` or let a notebook display it.

- under shift (from `bnn_shift.shift.plots`): `plot_metric_vs_severity` (accuracy, ECE, …
  against severity), `plot_severity_grid`, `plot_corruption_bars`, `plot_reliability`;
- priors: `std_along_directions` tabulates the std of first-layer weights along the training
  inputs' principal directions, under priors and posteriors; `plot_std_along_directions`
  draws it;
- diagnostics (ArviZ, via arviz-plots): `plot_trace` of the function-space trace and
  `plot_energy` (marginal energy vs energy transitions, with E-BFMI) of a sampler's run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from bnn_shift.inference.posterior import Posterior
from bnn_shift.models.params import param_paths, partition_params
from bnn_shift.priors.base import Prior
from bnn_shift.priors.empcov import EmpCov
from bnn_shift.priors.predictive import std_along_data_directions
from bnn_shift.shift.plots import (
    plot_corruption_bars,
    plot_metric_vs_severity,
    plot_reliability,
    plot_severity_grid,
)
from bnn_shift.typing import PyTree

__all__ = [
    "arviz_tree",
    "plot_corruption_bars",
    "plot_energy",
    "plot_metric_vs_severity",
    "plot_reliability",
    "plot_severity_grid",
    "plot_std_along_directions",
    "plot_trace",
    "std_along_directions",
]

# --------------------------------------------------------------------------------------------
# prior vs posterior std along the data's principal directions


def _leaf(tree: PyTree, path: str, what: str):
    names = param_paths(tree)
    if path not in names:
        raise ValueError(f"{what} has no parameter {path!r}; its parameters are {names}")
    return jax.tree.leaves(tree)[names.index(path)]


def _check_rows(weights: np.ndarray, d: int, path: str, what: str) -> None:
    """weights (draws, out, *event) must hold rows of the inputs' flattened size d."""
    if weights.ndim < 3 or math.prod(weights.shape[2:]) != d:
        raise ValueError(
            f"{what}: parameter {path!r} has per-draw shape {weights.shape[1:]}, not rows of the "
            f"{d} input features; pass the first dense layer's weight and x as that layer sees it"
        )


def _prior_draws(prior: Prior, params_like: PyTree, path: str, n: int, seed: int) -> np.ndarray:
    """(n, *leaf shape) draws of one parameter under `prior`."""
    keys = jax.random.split(jax.random.key(seed), n)
    sample = jax.vmap(lambda k: _leaf(prior.sample(k, params_like), path, "prior"))
    return np.asarray(sample(keys))


def std_along_directions(
    x: np.ndarray,
    *,
    posteriors: Mapping[str, Posterior] | None = None,
    priors: Mapping[str, Prior] | None = None,
    model: PyTree | None = None,
    path: str = "layers.0.weight",
    n_prior_draws: int = 32,
    seed: int = 0,
) -> pd.DataFrame:
    """Std of first-layer weights along the principal directions of the training inputs.

    x (n, ...): training inputs as the first (dense) layer sees them; flattened to (n, d).
    posteriors: name -> Posterior, measured on its kept draws of `path`.
    priors: name -> Prior, measured on `n_prior_draws` draws of the parameters of `model`
        (default: the structure of the first posterior's draws).
    The std along a unit direction u is the root mean square of w·u over every row w of the
    weight and every draw (the std about zero, which the priors are centred on).

    Returns a tidy table with columns rank (0 = largest data variance), source (a name, or
    "data"), kind ("data", "prior" or "posterior") and std; the "data" rows hold the inputs'
    std along each direction.
    """
    posteriors, priors = dict(posteriors or {}), dict(priors or {})
    if not posteriors and not priors:
        raise ValueError("nothing to measure: pass posteriors={name: Posterior} or priors=")
    clash = sorted(set(posteriors) & set(priors) | {"data"} & {*posteriors, *priors})
    if clash:
        raise ValueError(f"names {clash} are taken: give priors and posteriors distinct names")
    directions = EmpCov.from_data(x)  # principal directions of the inputs, float64 eigh
    data_std, _ = directions.std_along_data_directions()
    d = directions.dim
    rank = np.arange(d)
    frames = [pd.DataFrame({"rank": rank, "source": "data", "kind": "data", "std": data_std})]

    for name, post in posteriors.items():
        weights = np.asarray(_leaf(post.draws, path, f"posterior {name!r}"))  # (draws, out, d)
        _check_rows(weights, d, path, f"posterior {name!r}")
        if len(weights) == 0:
            raise ValueError(f"posterior {name!r} has no draws")
        std = std_along_data_directions(weights, directions)
        frames.append(pd.DataFrame({"rank": rank, "source": name, "kind": "posterior", "std": std}))

    if priors:
        if model is not None:
            params_like, _ = partition_params(model)
        elif posteriors:
            params_like = jax.tree.map(lambda a: a[0], next(iter(posteriors.values())).draws)
        else:
            raise ValueError("priors need the parameters they are drawn for: pass model=")
        for i, (name, prior) in enumerate(priors.items()):
            weights = _prior_draws(prior, params_like, path, n_prior_draws, seed + i)
            _check_rows(weights, d, path, f"prior {name!r}")
            std = std_along_data_directions(weights, directions)
            frames.append(pd.DataFrame({"rank": rank, "source": name, "kind": "prior", "std": std}))
    return pd.concat(frames, ignore_index=True)


def plot_std_along_directions(table: pd.DataFrame, title: str | None = None) -> Figure:
    """Two panels sharing the principal-direction axis (largest data variance first).

    Top: the inputs' std along each direction. Bottom: the weights' std along it, dashed for
    priors, solid for posteriors. Both on log scales: a Gaussian prior is flat across
    directions, EmpCov follows the data and leaves almost no spread where the inputs never vary.
    `table` is what `std_along_directions` returns.
    """
    missing = {"rank", "source", "kind", "std"} - set(table.columns)
    if missing:
        raise ValueError(
            f"table lacks columns {sorted(missing)}; build it with std_along_directions"
        )
    data = table[table["kind"] == "data"]
    weights = table[table["kind"] != "data"]
    if data.empty or weights.empty:
        raise ValueError("table needs 'data' rows and at least one prior or posterior")
    fig = Figure(figsize=(6.0, 5.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(1, 2))
    floor = 1e-6  # directions with no data variance are drawn at the floor of the log axis
    top.plot(data["rank"], np.maximum(data["std"], floor), color="k", label="inputs")
    top.set_yscale("log")
    top.set_ylabel("data std")
    top.grid(alpha=0.3)
    for (source, kind), rows in weights.groupby(["source", "kind"], sort=False):
        style = "--" if kind == "prior" else "-"
        bottom.plot(rows["rank"], rows["std"], style, label=f"{source} ({kind})")
    bottom.set_yscale("log")
    bottom.set_xlabel("data principal direction (0 = largest variance)")
    bottom.set_ylabel("weight std along direction")
    bottom.legend(fontsize="small")
    bottom.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------------------------
# ArviZ diagnostics (arviz-plots, matplotlib backend)


def _with_sample_coords(ds: xr.Dataset) -> xr.Dataset:
    """arviz-plots groups by chain only when chain and draw are coordinates."""
    return ds.assign_coords({dim: np.arange(ds.sizes[dim]) for dim in ("chain", "draw")})


def arviz_tree(source: Posterior | xr.DataTree) -> xr.DataTree:
    """The (chain, draw) groups of a sampler's run, with chain/draw coordinates, for ArviZ.

    source: a Posterior, or its `to_datatree()` / a saved run opened with
    `bnn_shift.inference.diagnostics.open_run`. Optimiser fits (MAP) have no chains.
    """
    tree = source.to_datatree() if isinstance(source, Posterior) else source
    if "posterior" not in tree.children or "sample_stats" not in tree.children:
        raise ValueError(
            "no chains to plot: this is an optimiser's fit (MAP); trace and energy plots need a "
            "sampler's run (hmc, nuts, sgld)"
        )
    groups = {
        name: _with_sample_coords(tree[name].to_dataset())
        for name in ("posterior", "sample_stats", "warmup_posterior", "warmup_sample_stats")
        if name in tree.children
    }
    return xr.DataTree.from_dict(groups)


def _figure(collection) -> Figure:
    """The matplotlib Figure of an arviz-plots PlotCollection, detached from pyplot."""
    import matplotlib.pyplot as plt

    fig = collection.viz["figure"].item()
    plt.close(fig)  # arviz-plots makes it through pyplot; keep it out of pyplot's registry
    return fig


def plot_trace(
    source: Posterior | xr.DataTree,
    var_names: Sequence[str] | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """ArviZ trace plot of the post-burn-in function-space trace: per quantity, a density and a
    trace panel, one colour per chain (`arviz_plots.plot_trace_dist`). Divergences are marked.

    var_names: quantities to show (default all: the train log-likelihood, and per labelled
    eval set its log-predictive and accuracy).
    """
    import arviz_plots as azp

    tree = arviz_tree(source)
    if tree["posterior"].sizes.get("draw", 0) < 2:
        raise ValueError("fewer than 2 post-burn-in iterations: nothing to trace")
    kwargs = {"figure_kwargs": {"figsize": figsize}} if figsize else {}
    names = list(var_names) if var_names is not None else None
    return _figure(azp.plot_trace_dist(tree, var_names=names, backend="matplotlib", **kwargs))


def plot_energy(
    source: Posterior | xr.DataTree, figsize: tuple[float, float] | None = None
) -> Figure:
    """ArviZ energy plot (`arviz_plots.plot_energy`): the marginal energy distribution against
    the distribution of energy changes between iterations, with the E-BFMI of each chain.

    The energy is the Hamiltonian each iteration's engine recorded (for HMC, that of the
    proposal). When the transition distribution is much narrower than the marginal, the
    momentum resampling explores the energy levels slowly (E-BFMI below 0.3 is a warning).
    """
    import arviz_plots as azp

    tree = arviz_tree(source)
    stats = tree["sample_stats"]
    if "energy" not in stats.data_vars:
        raise ValueError("the run recorded no 'energy' sample stat")
    if stats.sizes.get("draw", 0) < 3:
        raise ValueError("fewer than 3 post-burn-in iterations: no energy distribution to plot")
    kwargs = {"figure_kwargs": {"figsize": figsize}} if figsize else {}
    return _figure(azp.plot_energy(tree, backend="matplotlib", **kwargs))
