"""Prior predictive checks and the quantity that explains EmpCov's robustness.

`prior_predictive` draws networks from a prior and returns their class probabilities;
`empcov_directions` tabulates EmpCov's prior std along the data's principal directions,
`std_along_data_directions` measures any set of first-layer weight draws the same way, and
`parameter_table` says which prior governs each parameter.
"""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np
import pandas as pd

from bnn_shift.models.params import param_paths, partition_params
from bnn_shift.priors.base import Prior
from bnn_shift.priors.compose import ByPath, describe_selector
from bnn_shift.priors.empcov import EmpCov
from bnn_shift.typing import PyTree


def prior_predictive(
    model: PyTree, prior: Prior, x, *, n_samples: int = 32, seed: int = 0
) -> np.ndarray:  # (n_samples, n, k)
    """Softmax outputs on inputs x (n, ...) of `n_samples` networks drawn from `prior`."""
    params, static = partition_params(model)
    keys = jax.random.split(jax.random.key(seed), n_samples)
    x = jax.numpy.asarray(np.asarray(x, np.float32))

    @jax.jit
    def one(key):
        net = eqx.combine(prior.sample(key, params), static)
        return jax.nn.softmax(jax.vmap(net)(x), axis=-1)

    return np.stack([np.asarray(one(k)) for k in keys])


def find_empcov(prior: Prior) -> EmpCov:
    """The first EmpCov in a prior: itself or one it is built from (e.g. a by_path rule)."""
    found = next((p for p in prior.walk() if isinstance(p, EmpCov)), None)
    if found is None:
        raise ValueError(f"no EmpCov prior found in {type(prior).__name__}")
    return found


def std_along_data_directions(weights: np.ndarray, empcov: EmpCov) -> np.ndarray:  # (d,)
    """Std of first-layer weights along each data principal direction, largest data variance
    first. weights: (draws, out, *event) draws of one layer; rows are pooled over out."""
    d = empcov.dim
    rows = np.asarray(weights, np.float64).reshape(len(weights), -1, d)
    coords = rows @ np.asarray(empcov.eigvecs, np.float64)  # (draws, out, d)
    order = np.argsort(np.asarray(empcov.data_var))[::-1]
    return np.sqrt(np.mean(coords**2, axis=(0, 1)))[order]


def empcov_directions(prior: Prior, n_top: int = 5, n_bottom: int = 5) -> pd.DataFrame:
    """Table of data std and EmpCov prior std along the top and bottom principal directions.

    Columns: rank (0 = largest data variance), data_std, prior_std.
    """
    empcov = find_empcov(prior)
    data_std, prior_std = empcov.std_along_data_directions()
    d = len(data_std)
    ranks = sorted({*range(min(n_top, d)), *range(max(d - n_bottom, 0), d)})
    return pd.DataFrame({"rank": ranks, "data_std": data_std[ranks], "prior_std": prior_std[ranks]})


def parameter_table(prior: Prior, params: PyTree) -> pd.DataFrame:
    """Which prior governs each parameter: columns path, shape, prior."""
    paths = param_paths(params)
    leaves = jax.tree.leaves(params)
    owner = [prior.describe()] * len(leaves)
    if isinstance(prior, ByPath):
        for rule, idx in prior.assign(params).items():
            sub = prior.priors[prior.patterns.index(rule)]
            for i in idx:
                owner[i] = f"{describe_selector(rule)} -> {sub.describe()}"
    shapes = [tuple(leaf.shape) for leaf in leaves]
    return pd.DataFrame({"path": paths, "shape": shapes, "prior": owner})
