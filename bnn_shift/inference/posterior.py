"""`Posterior`: parameter draws, per-iteration sample stats and running model-average predictions.

Saved as netCDF through an xarray DataTree (groups `posterior`, `sample_stats`, `predictions`),
never pickle; loading needs a model of the same architecture to supply the static structure.
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
def _average_probs(draws: PyTree, static: PyTree, x: jax.Array) -> jax.Array:  # (n, k)
    """Mean over the leading draw axis of softmax predictions, one draw at a time."""

    def add(total, params):
        return total + predict_probs(params, static, x), None

    first = jax.tree.map(lambda d: d[0], draws)
    init = predict_probs(first, static, x)
    rest = jax.tree.map(lambda d: d[1:], draws)
    total, _ = jax.lax.scan(add, init, rest)
    return total / jax.tree.leaves(draws)[0].shape[0]


@dataclass
class Posterior:
    """Draws of a model's parameters and what was recorded while drawing them.

    draws: params pytree whose leaves have a leading draw axis (n_draws, ...).
    stats: per-iteration arrays (n_iterations,), e.g. acceptance_rate, diverging.
    predictions: eval-set name -> running model-average probabilities (n, k).
    """

    static: PyTree
    draws: PyTree
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_draws(self) -> int:
        leaves = jax.tree.leaves(self.draws)
        return int(leaves[0].shape[0]) if leaves else 0

    def draw(self, i: int) -> PyTree:
        """The full model (params + structure) of draw `i`."""
        return eqx.combine(jax.tree.map(lambda d: d[i], self.draws), self.static)

    def predict_proba(self, x, batch_size: int = 4096) -> np.ndarray:  # (n, k)
        """Model-average class probabilities: the mean over draws of softmax(model(x))."""
        if self.n_draws == 0:
            raise ValueError(
                "this posterior has no draws (every proposal was rejected?); lower the step size"
            )
        x = np.asarray(x, np.float32)
        chunks = [
            np.asarray(_average_probs(self.draws, self.static, jnp.asarray(x[i : i + batch_size])))
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(chunks)

    def predict(self, x, batch_size: int = 4096) -> np.ndarray:  # (n,)
        return np.argmax(self.predict_proba(x, batch_size), axis=-1)

    def to_datatree(self) -> xr.DataTree:
        """ArviZ-style DataTree: posterior (chain, draw, ...), sample_stats, predictions."""
        names = param_paths(self.draws)
        posterior = xr.Dataset(
            {
                name: (
                    ("chain", "draw", *[f"{name}_dim_{i}" for i in range(leaf.ndim - 1)]),
                    np.asarray(leaf)[None],
                )
                for name, leaf in zip(names, jax.tree.leaves(self.draws))
            }
        )
        stats = xr.Dataset(
            {k: (("chain", "iteration"), np.asarray(v)[None]) for k, v in self.stats.items()}
        )
        predictions = xr.Dataset(
            {k: ((f"{k}_example", "class"), np.asarray(v)) for k, v in self.predictions.items()}
        )
        attrs = {"bnn_shift": json.dumps(self.attrs, default=str)}
        return xr.DataTree.from_dict(
            {
                "/": xr.Dataset(attrs=attrs),
                "posterior": posterior,
                "sample_stats": stats,
                "predictions": predictions,
            }
        )

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
        names = param_paths(params_like)
        with xr.open_datatree(path, engine="h5netcdf") as tree:
            tree = tree.load()
        posterior = tree["posterior"].to_dataset()
        missing = [n for n in names if n not in posterior]
        if missing:
            raise ValueError(
                f"{path} does not match the given model: no draws for parameters {missing}"
            )
        leaves, treedef = jax.tree.flatten(params_like)
        draws = []
        for name, like in zip(names, leaves):
            values = posterior[name].values[0]
            if values.shape[1:] != like.shape:
                raise ValueError(
                    f"{path}: parameter {name} has shape {values.shape[1:]}, the model {like.shape}"
                )
            draws.append(jnp.asarray(values, like.dtype))
        stats = {k: v.values[0] for k, v in tree["sample_stats"].to_dataset().items()}
        predictions = {k: v.values for k, v in tree["predictions"].to_dataset().items()}
        attrs = json.loads(tree.attrs.get("bnn_shift", "{}"))
        return cls(static, jax.tree.unflatten(treedef, draws), stats, predictions, attrs)


def stack_draws(draws: list[PyTree]) -> PyTree:
    """List of params pytrees -> one pytree with a leading draw axis (host numpy arrays)."""
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *draws)


def empty_draws(params_like: PyTree) -> PyTree:
    """A draws pytree with zero draws."""
    return jax.tree.map(lambda x: np.zeros((0, *x.shape), x.dtype), params_like)


