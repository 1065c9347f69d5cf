"""`Posterior`: parameter draws, per-iteration sample stats and running model-average predictions.

Saved as netCDF through an xarray DataTree (groups `posterior`, `sample_stats`, `predictions`,
`draws`, `variational/<name>`), never pickle; loading needs a model of the same architecture
to supply the static structure.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from bnn_shift.inference.likelihood import (
    Likelihood,
    PredictFn,
    float32_values,
    likelihood_from_description,
)
from bnn_shift.models.params import param_paths, partition_params
from bnn_shift.typing import PyTree


@eqx.filter_jit
def _summed(draws: PyTree, static: PyTree, x: jax.Array, per_draw: PredictFn) -> jax.Array:
    """Sum over the leading draw axis of per_draw(params, static, x), one draw at a time."""

    def add(total, params):
        return total + per_draw(params, static, x), None

    zero = jnp.zeros_like(per_draw(jax.tree.map(lambda d: d[0], draws), static, x))
    return jax.lax.scan(add, zero, draws)[0]


@eqx.filter_jit
def _each(draws: PyTree, static: PyTree, x: jax.Array, per_draw: PredictFn) -> jax.Array:
    """per_draw(params, static, x) of every draw (leading axis), one draw at a time."""
    return jax.lax.map(lambda params: per_draw(params, static, x), draws)


DRAW_CHUNK = 32  # draws moved to the device at once: bounds device memory for long runs
DRAW_CHUNK_FLOATS = 2**24  # per-draw predictions come in row chunks of at most this many floats
PROBABILITIES = ("categorical", "sequence_categorical")  # likelihoods predicting probabilities


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
    kind: what the draws are (KINDS): "chain" (MCMC states, stats per iteration and chain),
        "optimizer" (a point estimate), "ensemble" (independent fits) or "variational" (draws
        from a fitted q); inferred from the other fields when not given (old files).
    """

    static: PyTree
    draws: PyTree
    draw_chain: np.ndarray | None = None
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    trace: dict[str, np.ndarray] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    variational: dict[str, PyTree] = field(default_factory=dict)
    kind: str | None = None

    def __post_init__(self):
        if self.draw_chain is None:
            self.draw_chain = np.zeros(self.n_draws, np.int32)
        if self.kind is None:
            self.kind = _infer_kind(self.attrs, self.variational)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def n_draws(self) -> int:
        leaves = jax.tree.leaves(self.draws)
        return int(leaves[0].shape[0]) if leaves else 0

    @property
    def is_chain(self) -> bool:
        """True for sampler output (stats per iteration and chain)."""
        return self.kind == "chain"

    def draw(self, i: int) -> PyTree:
        """The full model (params + structure) of draw `i`."""
        return eqx.combine(jax.tree.map(lambda d: d[i], self.draws), self.static)

    @property
    def likelihood(self) -> Likelihood:
        """The observation model the draws were fitted with (from attrs["likelihood"])."""
        return likelihood_from_description(self.attrs.get("likelihood", "categorical"))

    def predict_proba(self, x, batch_size: int = 4096) -> np.ndarray:  # (n, k) or (n, T, k)
        """Model-average class probabilities: the mean over draws of softmax(model(x))."""
        if self.likelihood.name not in PROBABILITIES:
            raise ValueError(
                f"class probabilities need a categorical likelihood; this posterior was fitted "
                f"with {self.likelihood.describe()} (use predict for the model-average means, "
                "predict_draws for each draw's, or bnn_shift.sklearn.BNNRegressor for "
                "predictive means and stds)"
            )
        return self.model_average(x, batch_size)

    def model_average(self, x, batch_size: int = 4096) -> np.ndarray:  # (n, ...)
        """The mean over draws of the likelihood's prediction (probabilities or means); draws
        are read (possibly from a memory map) and moved DRAW_CHUNK at a time."""
        self._check_draws()
        x = self._check_inputs(x, batch_size, self.likelihood.predict)
        parts = []
        for i in range(0, len(x), batch_size):
            total, rows = 0.0, jnp.asarray(x[i : i + batch_size])
            for draws in self._draw_chunks():
                total = total + _summed(draws, self.static, rows, self.likelihood.predict)
            parts.append(np.asarray(total / self.n_draws))
        return np.concatenate(parts)

    def predict_draws(
        self, x, batch_size: int | None = None, per_draw: PredictFn | None = None
    ) -> np.ndarray:  # (n_draws, n, ...)
        """Every draw's prediction on x (n, ...): the likelihood's (class probabilities or
        means) or per_draw(params, static, x). Rows come in chunks of at most batch_size and
        DRAW_CHUNK_FLOATS floats over all draws, draws DRAW_CHUNK at a time."""
        self._check_draws()
        per_draw = per_draw or self.likelihood.predict
        x = self._check_inputs(x, batch_size, per_draw)
        one = jax.tree.map(lambda d: jax.ShapeDtypeStruct(d.shape[1:], d.dtype), self.draws)
        size = math.prod(eqx.filter_eval_shape(per_draw, one, self.static, x[:1]).shape)
        step = max(1, DRAW_CHUNK_FLOATS // (self.n_draws * max(size, 1)))
        step = step if batch_size is None else min(step, batch_size)
        rows = []
        for i in range(0, len(x), step):
            chunk = jnp.asarray(x[i : i + step])
            parts = [_each(d, self.static, chunk, per_draw) for d in self._draw_chunks()]
            rows.append(np.concatenate([np.asarray(p) for p in parts]))
        return np.concatenate(rows, axis=1)

    def predict(self, x, batch_size: int = 4096) -> np.ndarray:  # (n,) or (n, ...)
        """Classes of the model-average probabilities (categorical), else the model-average
        means."""
        if self.likelihood.name in PROBABILITIES:
            return np.argmax(self.predict_proba(x, batch_size), axis=-1)
        return self.model_average(x, batch_size)

    def _check_draws(self) -> None:
        if self.n_draws == 0:
            reason = self.attrs.get("no_draws") or (
                "every proposal was rejected, or the run kept no draws (keep_draws=False)?"
            )
            raise ValueError(f"this posterior has no draws: {reason}")

    def _check_inputs(self, x, batch_size: int | None, per_draw: PredictFn) -> np.ndarray:
        """x (n, ...) as float32, checked: finite reals, n >= 1, examples the model takes."""
        if batch_size is not None and (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int | np.integer)
            or batch_size < 1
        ):
            raise ValueError(f"batch_size is {batch_size!r}; give a positive integer")
        x = np.asarray(x)
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"x has shape {x.shape}; give examples shaped (n >= 1, ...)")
        x = float32_values(x, "x")
        expected = self.attrs.get("input_shape")
        if expected is not None and list(x.shape[1:]) != list(expected):
            raise ValueError(
                f"x has examples of shape {x.shape[1:]}; this posterior's model takes "
                f"{tuple(expected)} (reshape x, or use the posterior fitted to such inputs)"
            )
        one = jax.tree.map(lambda d: jax.ShapeDtypeStruct(d.shape[1:], d.dtype), self.draws)
        try:
            eqx.filter_eval_shape(per_draw, one, self.static, x[:1])
        except (TypeError, ValueError, IndexError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(
                f"this posterior's model cannot take examples of shape {x.shape[1:]} ({first}); "
                "give inputs shaped like the training data"
            ) from err
        return x

    def _draw_chunks(self):
        for start in range(0, self.n_draws, DRAW_CHUNK):
            yield jax.tree.map(lambda d, s=start: jnp.asarray(d[s : s + DRAW_CHUNK]), self.draws)

    def to_datatree(self) -> xr.DataTree:
        """ArviZ-style DataTree. Samplers: `posterior` / `warmup_posterior` (function-space trace)
        and `sample_stats` / `warmup_sample_stats`, each (chain, draw); optimizers: `fit_stats`
        (step). Always: `draws` (sample, ...) with the kept parameters and their chain, and
        `predictions`; `variational/<name>` per variational pytree. Settings are JSON in the root
        attribute `bnn_shift`."""
        root = {"bnn_shift": json.dumps(self.attrs, default=str), "kind": self.kind}
        groups = {"/": xr.Dataset(attrs=root)}
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
            {
                k: (_prediction_dims(k, np.ndim(v)), np.asarray(v))
                for k, v in self.predictions.items()
            }
        )
        return xr.DataTree.from_dict(groups)

    def save(self, path: str | Path) -> Path:
        """Write to a netCDF file (atomically: a temporary file renamed into place), with the
        sha256 of every stored array in the root attribute `checksums` (verified by `load`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tree = self.to_datatree()
        tree.attrs[CHECKSUMS] = json.dumps(tree_checksums(tree))
        tree.to_netcdf(tmp, engine="h5netcdf", encoding=_compressed(tree, COMPRESSED_GROUPS))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, model_like: PyTree) -> Posterior:
        """Read a saved posterior; `model_like` is any model of the same architecture."""
        params_like, static = partition_params(model_like)
        tree = read_posterior_file(path)
        attrs = json.loads(tree.attrs.get("bnn_shift", "{}"))
        draws, draw_chain = _read_draws(tree["draws"].to_dataset(), params_like, path)
        kind = tree.attrs.get("kind")  # None in files written before it was stored
        post = cls(static, draws, draw_chain, attrs=attrs, kind=kind)
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
        if "laplace" in tree.children:  # a LaplacePosterior keeps its approximation
            from bnn_shift.inference.laplace.predict import LaplacePosterior

            return LaplacePosterior.from_saved(post, tree["laplace"].to_dataset())
        return post


COMPRESSED_GROUPS = ("/laplace",)  # curvature matrices: a dense prior precision is mostly 0


def _compressed(tree: xr.DataTree, groups: tuple[str, ...]) -> dict[str, dict]:
    """netCDF encoding: zlib for every variable of the named groups present in `tree`."""
    return {
        node.path: {name: {"zlib": True, "complevel": 4} for name in node.dataset.data_vars}
        for node in tree.subtree
        if node.path in groups
    }


CHECKSUMS = "checksums"  # root attribute: JSON {group/variable: sha256} of every stored array
GROUPS = ("draws", "predictions")  # groups every posterior file has


class PosteriorFileError(ValueError):
    """A posterior file that cannot be read back as it was written."""


def tree_checksums(tree: xr.DataTree) -> dict[str, str]:
    """Name "/group/variable" -> sha256 of its dtype, shape and C-order bytes, for every array of
    every group (and "/bnn_shift" for the root's settings)."""
    sums = {"/bnn_shift": hashlib.sha256(str(tree.attrs.get("bnn_shift", "")).encode()).hexdigest()}
    for node in tree.subtree:
        for name, var in node.dataset.variables.items():
            values = np.ascontiguousarray(var.values)
            h = hashlib.sha256(f"{values.dtype.str}{values.shape}".encode())
            h.update(values.tobytes())
            sums[f"{node.path.rstrip('/')}/{name}"] = h.hexdigest()
    return sums


def read_posterior_file(path: str | Path) -> xr.DataTree:
    """A saved posterior's DataTree, fully loaded, its arrays checked against the checksums
    stored when it was saved (files written before checksums are read unchecked); a
    PosteriorFileError naming the file when it is unreadable, damaged or not a posterior."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such posterior file")
    try:
        with xr.open_datatree(path, engine="h5netcdf") as tree:
            tree = tree.load()
    except Exception as err:  # h5py, netCDF and xarray each raise their own kinds
        raise PosteriorFileError(
            f"{path} cannot be read as a saved posterior ({type(err).__name__}): the file is "
            "truncated, corrupted or not a netCDF file written by Posterior.save; restore it "
            "or fit again"
        ) from err
    missing = [g for g in GROUPS if g not in tree.children]
    if missing or "bnn_shift" not in tree.attrs:
        raise PosteriorFileError(
            f"{path} is a netCDF file but not a saved posterior (no {missing or 'settings'}); "
            "give a file written by Posterior.save"
        )
    stored = tree.attrs.get(CHECKSUMS)
    if stored is not None:
        _verify_checksums(path, json.loads(stored), tree_checksums(tree))
    return tree


def _verify_checksums(path: Path, stored: dict[str, str], found: dict[str, str]) -> None:
    bad = sorted(k for k in stored.keys() | found.keys() if stored.get(k) != found.get(k))
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise PosteriorFileError(
            f"{path} is corrupted: {shown} do not match the checksums stored when it was "
            "saved; restore the file or fit again"
        )


def _prediction_dims(name: str, ndim: int) -> tuple[str, ...]:
    """(example, ..., output) names: sequence predictions keep their extra axes."""
    return (f"{name}_example", *[f"{name}_dim_{i}" for i in range(ndim - 2)], f"{name}_output")


KINDS = ("chain", "optimizer", "ensemble", "variational")


def _infer_kind(attrs: dict[str, Any], variational: dict) -> str:
    """The kind of a posterior built without one: from its attrs (as files before kinds were
    stored)."""
    if "n_burnin" in attrs:
        return "chain"
    if variational or attrs.get("method") == "mfvi":
        return "variational"
    return "ensemble" if attrs.get("method") == "deep_ensemble" else "optimizer"


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
