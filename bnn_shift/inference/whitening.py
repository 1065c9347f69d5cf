"""EmpCov at the Gaussian's price: sample a dense first layer in whitened coordinates.

Full-batch samplers precondition an EmpCov first layer W (out, d) with A = (prior covariance /
scale^2)^(1/2): they move z with W = z A. Doing that inside every leapfrog costs two extra
(d, d) matmuls (the velocity and the dense prior). Since the layer computes W x = z (A x), the
same chain runs on z directly with the inputs rotated once (x -> A x, A symmetric) and an
isotropic Gaussian(scale) prior on z, which is the EmpCov prior in z coordinates (the change of
variables is linear, so the posterior is the same up to a constant). States are mapped back to
W for everything the user sees: kept draws, traced parameters and eval-set predictions.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.models.params import param_paths
from bnn_shift.priors import ByPath, EmpCov, Gaussian
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree


class InputWhitening(eqx.Module):
    """theta = z A on one dense first-layer leaf; inputs rotated by A (A symmetric, (d, d))."""

    leaf: int = eqx.field(static=True)  # index of the first-layer weight among the leaves
    sqrt_inv_mass: jax.Array  # A: prior covariance^(1/2) / scale
    sqrt_mass: jax.Array  # A^-1

    def to_params(self, z: PyTree) -> PyTree:
        """Whitened coordinates -> the model's parameters."""
        return self._map(z, self.sqrt_inv_mass)

    def to_whitened(self, params: PyTree) -> PyTree:
        """The model's parameters -> whitened coordinates."""
        return self._map(params, self.sqrt_mass)

    def rotate(self, x: np.ndarray) -> np.ndarray:  # (n, ...) -> (n, ...)
        """Inputs as the whitened layer reads them: each flattened example times A, in float64."""
        flat = np.asarray(x, np.float64).reshape(len(x), -1)
        a = np.asarray(self.sqrt_inv_mass, np.float64)
        return (flat @ a).reshape(np.shape(x)).astype(np.float32)

    def _map(self, tree: PyTree, matrix: jax.Array) -> PyTree:
        leaves, treedef = jax.tree.flatten(tree)
        w = leaves[self.leaf]
        leaves[self.leaf] = (w.reshape(-1, matrix.shape[0]) @ matrix).reshape(w.shape)
        return jax.tree.unflatten(treedef, leaves)


def find_whitening(
    model: PyTree, prior: Prior, params: PyTree
) -> tuple[InputWhitening, Prior] | None:
    """(the whitening, the prior on whitened coordinates) when `prior` is a `by_path` rule set
    that puts a dense `EmpCov` on exactly the model's dense first-layer weight; else None."""
    first = getattr(model, "first_layer", None)
    if first is None or first.kind != "dense" or not isinstance(prior, ByPath):
        return None
    paths = param_paths(params)
    if first.path not in paths:
        return None
    leaf = paths.index(first.path)
    rules = dict(zip(prior.patterns, prior.priors))
    owners = prior.assign(params)
    chosen = [p for p, r in rules.items() if isinstance(r, EmpCov) and owners[p] == [leaf]]
    if len(chosen) != 1 or len(rules[chosen[0]].event_shape) != 1:
        return None
    empcov = rules[chosen[0]]
    factor = empcov.preconditioner([jax.tree.leaves(params)[leaf]])[0]
    rules[chosen[0]] = Gaussian(empcov.scale)
    whitening = InputWhitening(leaf, factor.sqrt_inv_mass, factor.sqrt_mass)
    return whitening, ByPath(rules)


def whitened_positions(whitening: InputWhitening, positions: PyTree) -> PyTree:
    """(n_chains, ...) starting points in whitened coordinates."""
    return jax.vmap(whitening.to_whitened)(jax.tree.map(jnp.asarray, positions))
