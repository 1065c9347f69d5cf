"""`Posterior`: parameter draws, per-iteration sample stats and running model-average predictions.

Saved as netCDF through an xarray DataTree (groups `posterior`, `sample_stats`, `predictions`,
`draws`, `variational/<name>`), never pickle; loading needs a model of the same architecture
to supply the static structure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from bnn_shift.inference.likelihood import predict_probs
from bnn_shift.models.params import PyTree, param_paths, partition_params


@eqx.filter_jit
def _summed_probs(draws: PyTree, static: PyTree, x: jax.Array) -> jax.Array:  # (n, k)
    """Sum over the leading draw axis of softmax predictions, one draw at a time."""

    def add(total, params):
        return total + predict_probs(params, static, x), None

    zero = jnp.zeros_like(predict_probs(jax.tree.map(lambda d: d[0], draws), static, x))
    total, _ = jax.lax.scan(add, zero, draws)
    return total


DRAW_CHUNK = 32  # draws moved to the device at once: bounds device memory for long runs


@dataclass
class Posterior:
    """Draws of a model's parameters and what was recorded while drawing them.

    draws: params pytree whose leaves have a leading draw axis (n_draws, ...): the states that
        enter the model average (host or memory-mapped arrays for runs streamed to a run_dir);
        draw_chain (n_draws,) says which chain each came from.
    stats: samplers: (n_iterations, n_chains) per iteration (acceptance_rate, diverging, ...);
        optimizers: (n_steps,) (e.g. loss).
    trace: (n_iterations, n_chains) function-space quantities (log-likelihood, test accuracy).
    predictions: eval-set name -> running model-average probabilities (m, k).
    variational: name -> params pytree (no draw axis) describing a fitted approximation q;
        mfvi: "mean" and "std", q = N(mean, std^2) independently per parameter.
    """

    static: PyTree
    draws: PyTree
    draw_chain: np.ndarray | None = None
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    trace: dict[str, np.ndarray] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    variational: dict[str, PyTree] = field(default_factory=dict)

    def __post_init__(self):
        if self.draw_chain is None:
            self.draw_chain = np.zeros(self.n_draws, np.int32)

    @property
    def n_draws(self) -> int:
        leaves = jax.tree.leaves(self.draws)
        return int(leaves[0].shape[0]) if leaves else 0

    @property
    def is_chain(self) -> bool:
        """True for sampler output (stats per iteration and chain), False for optimizers."""
        return "n_burnin" in self.attrs

    def draw(self, i: int) -> PyTree:
        """The full model (params + structure) of draw `i`."""
        return eqx.combine(jax.tree.map(lambda d: d[i], self.draws), self.static)

    def predict_proba(self, x, batch_size: int = 4096) -> np.ndarray:  # (n, k)
        """Model-average class probabilities: the mean over draws of softmax(model(x))."""
        likelihood = self.attrs.get("likelihood", "categorical")
        if likelihood != "categorical":
            raise ValueError(
                f"class probabilities need a categorical likelihood; this posterior was fitted "
                f"with {likelihood} (use posterior.draw(i) for each draw's outputs, or "
                "bnn_shift.sklearn.BNNRegressor for predictive means and stds)"
            )
        if self.n_draws == 0:
            raise ValueError(
                "this posterior has no draws (every proposal was rejected?); lower the step size"
            )
        x = np.asarray(x, np.float32)
        return np.concatenate(
            [
                self._mean_probs(jnp.asarray(x[i : i + batch_size]))
                for i in range(0, len(x), batch_size)
            ]
        )

    def _mean_probs(self, x: jax.Array) -> np.ndarray:  # (m, k)
        """Draws are read (possibly from a memory map) and moved DRAW_CHUNK at a time."""
        total = 0.0
        for start in range(0, self.n_draws, DRAW_CHUNK):
            chunk = jax.tree.map(lambda d, s=start: jnp.asarray(d[s : s + DRAW_CHUNK]), self.draws)
            total = total + _summed_probs(chunk, self.static, x)
        return np.asarray(total / self.n_draws)

    def predict(self, x, batch_size: int = 4096) -> np.ndarray:  # (n,)
        return np.argmax(self.predict_proba(x, batch_size), axis=-1)

    def to_datatree(self) -> xr.DataTree:
        """ArviZ-style DataTree. Samplers: `posterior` / `warmup_posterior` (function-space trace)
        and `sample_stats` / `warmup_sample_stats`, each (chain, draw); optimizers: `fit_stats`
        (step). Always: `draws` (sample, ...) with the kept parameters and their chain, and
        `predictions`; `variational/<name>` per variational pytree. Settings are JSON in the root
        attribute `bnn_shift`."""
        groups = {"/": xr.Dataset(attrs={"bnn_shift": json.dumps(self.attrs, default=str)})}
        if self.is_chain:
            burn = int(self.attrs["n_burnin"])
            for name, values in (("sample_stats", self.stats), ("posterior", self.trace)):
                groups[name] = _chain_dataset(values, slice(burn, None))
                groups[f"warmup_{name}"] = _chain_dataset(values, slice(0, burn))
        else:
            groups["fit_stats"] = xr.Dataset(
                {k: (("step",), np.asarray(v)) for k, v in self.stats.items()}
            )
        groups["draws"] = _draws_dataset(self.draws, self.draw_chain)
        for name, params in self.variational.items():
            groups[f"variational/{name}"] = _params_dataset(params)
        groups["predictions"] = xr.Dataset(
            {k: ((f"{k}_example", "class"), np.asarray(v)) for k, v in self.predictions.items()}
        )
        return xr.DataTree.from_dict(groups)

    def save(self, path: str | Path) -> Path:
        """Write to a netCDF file (atomically: a temporary file renamed into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        self.to_datatree().to_netcdf(tmp, engine="h5netcdf")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, model_like: PyTree) -> Posterior:
        """Read a saved posterior; `model_like` is any model of the same architecture."""
        params_like, static = partition_params(model_like)
        with xr.open_datatree(path, engine="h5netcdf") as tree:
            tree = tree.load()
        attrs = json.loads(tree.attrs.get("bnn_shift", "{}"))
        draws, draw_chain = _read_draws(tree["draws"].to_dataset(), params_like, path)
        post = cls(static, draws, draw_chain, attrs=attrs)
        if post.is_chain:
            post.stats = _read_chain(tree, "sample_stats")
            post.trace = _read_chain(tree, "posterior")
        else:
            post.stats = {k: v.values for k, v in tree["fit_stats"].to_dataset().items()}
        post.predictions = {k: v.values for k, v in tree["predictions"].to_dataset().items()}
        if "variational" in tree.children:
            post.variational = {
                name: _read_params(group.to_dataset(), params_like, path, f"{name} values")
                for name, group in tree["variational"].children.items()
            }
        return post


def _chain_dataset(values: dict[str, np.ndarray], rows: slice) -> xr.Dataset:
    """(n_iterations, n_chains, ...) arrays -> a (chain, draw, ...) Dataset of those iterations."""
    return xr.Dataset(
        {
            k: (
                ("chain", "draw", *[f"{k}_dim_{i}" for i in range(np.ndim(v) - 2)]),
                np.swapaxes(np.asarray(v)[rows], 0, 1),
            )
            for k, v in values.items()
        }
    )


def _read_chain(tree: xr.DataTree, group: str) -> dict[str, np.ndarray]:
    """Inverse of `_chain_dataset` over the warmup and main groups."""
    warm, main = tree[f"warmup_{group}"].to_dataset(), tree[group].to_dataset()
    return {
        k: np.concatenate([np.swapaxes(warm[k].values, 0, 1), np.swapaxes(main[k].values, 0, 1)])
        for k in main
    }


def _params_dataset(params: PyTree, lead: tuple[str, ...] = ()) -> xr.Dataset:
    """One variable per parameter path; the leaves' leading axes are named `lead`."""
    return xr.Dataset(
        {
            name: (
                (*lead, *[f"{name}_dim_{i}" for i in range(leaf.ndim - len(lead))]),
                np.asarray(leaf),
            )
            for name, leaf in zip(param_paths(params), jax.tree.leaves(params))
        }
    )


def _draws_dataset(draws: PyTree, draw_chain: np.ndarray) -> xr.Dataset:
    return _params_dataset(draws, ("sample",)).assign(chain=(("sample",), np.asarray(draw_chain)))


def _read_params(
    dataset: xr.Dataset, params_like: PyTree, path, what: str, n_lead: int = 0
) -> PyTree:
    """Inverse of `_params_dataset`, checked against `params_like` (shapes after n_lead axes)."""
    names = param_paths(params_like)
    missing = [n for n in names if n not in dataset]
    if missing:
        raise ValueError(
            f"{path} does not match the given model: no {what} for parameters {missing}"
        )
    leaves, treedef = jax.tree.flatten(params_like)
    values = []
    for name, like in zip(names, leaves):
        stored = dataset[name].values
        if stored.shape[n_lead:] != like.shape:
            raise ValueError(
                f"{path}: parameter {name} has shape {stored.shape[n_lead:]}, the model "
                f"{like.shape}"
            )
        values.append(jnp.asarray(stored, like.dtype))
    return jax.tree.unflatten(treedef, values)


def _read_draws(dataset: xr.Dataset, params_like: PyTree, path) -> tuple[PyTree, np.ndarray]:
    draws = _read_params(dataset, params_like, path, "draws", n_lead=1)
    return draws, dataset["chain"].values


def stack_draws(draws: list[PyTree]) -> PyTree:
    """List of params pytrees -> one pytree with a leading draw axis (host numpy arrays)."""
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *draws)


def empty_draws(params_like: PyTree) -> PyTree:
    """A draws pytree with zero draws."""
    return jax.tree.map(lambda x: np.zeros((0, *x.shape), x.dtype), params_like)
