"""A BlackJAX `Metric` whose mass matrix comes from the prior: HMC in whitened coordinates.

A leaf with a `MassFactor` A (d, d) has inverse mass A A acting on its trailing axes flattened to
d (the last axis of a dense weight; (in, kh, kw) of a conv kernel), so the dynamics
are those of plain HMC on z with theta = A z; leaves without one use the identity. BlackJAX's own
metrics act on the whole ravelled position, which cannot hold a per-layer (d, d) structure.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from blackjax.mcmc.metrics import Metric

from bnn_shift.priors.base import MassFactor
from bnn_shift.typing import PyTree


def _map_leaves(fn, factors: Sequence[MassFactor | None], *trees: PyTree) -> PyTree:
    """Apply fn(factor, *leaves) leafwise, factors aligned with the leaf order."""
    flat = [jax.tree.flatten(t) for t in trees]
    treedef = flat[0][1]
    if len(factors) != len(flat[0][0]):
        raise ValueError(
            f"preconditioner has {len(factors)} factors for {len(flat[0][0])} parameter arrays"
        )
    out = [fn(f, *leaves) for f, *leaves in zip(factors, *(leaves for leaves, _ in flat))]
    return jax.tree.unflatten(treedef, out)


def apply_factor(matrix: jax.Array, leaf: jax.Array) -> jax.Array:
    """leaf (..., *event) @ matrix (d, d) over the trailing axes whose sizes multiply to d."""
    d = matrix.shape[0]
    return (leaf.reshape(-1, d) @ matrix).reshape(leaf.shape)


def whiten_momentum(
    factors: Sequence[MassFactor | None], momentum: PyTree, scales: PyTree | None = None
) -> PyTree:
    """p -> M^{-1/2} p, the momentum in whitened coordinates (standard normal at refresh)."""
    xi = _map_leaves(
        lambda f, p: p if f is None else apply_factor(f.sqrt_inv_mass, p), factors, momentum
    )
    return xi if scales is None else jax.tree.map(jnp.multiply, scales, xi)


def _unwhiten(factors, xi: PyTree, scales: PyTree | None) -> PyTree:
    """xi -> M^{1/2} xi (the inverse of `whiten_momentum`)."""
    xi = xi if scales is None else jax.tree.map(jnp.divide, xi, scales)
    return _map_leaves(lambda f, v: v if f is None else apply_factor(f.sqrt_mass, v), factors, xi)


def from_whitened(factors: Sequence[MassFactor | None], z: PyTree) -> PyTree:
    """z -> theta = A z per preconditioned leaf (identity elsewhere)."""
    return _map_leaves(
        lambda f, v: v if f is None else apply_factor(f.sqrt_inv_mass, v), factors, z
    )


def to_whitened(factors: Sequence[MassFactor | None], theta: PyTree) -> PyTree:
    """theta -> z = A^-1 theta, the inverse of `from_whitened`."""
    return _map_leaves(
        lambda f, v: v if f is None else apply_factor(f.sqrt_mass, v), factors, theta
    )


def prior_metric(factors: Sequence[MassFactor | None], scales: PyTree | None = None) -> Metric:
    """The BlackJAX Metric for per-leaf mass factors A (None = identity) and, optionally, a
    diagonal `scales` S on the whitened coordinates: M^-1 = A S^2 A."""

    def sample_momentum(key: jax.Array, position: PyTree) -> PyTree:
        leaves, treedef = jax.tree.flatten(position)
        keys = jax.random.split(key, len(leaves))
        noise = [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
        return _unwhiten(factors, jax.tree.unflatten(treedef, noise), scales)

    def velocity(momentum: PyTree) -> PyTree:
        """M^-1 p: one matmul per preconditioned leaf (two with scales)."""
        if scales is not None:
            xi = whiten_momentum(factors, momentum, scales)
            return _map_leaves(
                lambda f, v: v if f is None else apply_factor(f.sqrt_inv_mass, v),
                factors,
                jax.tree.map(jnp.multiply, scales, xi),
            )
        return _map_leaves(
            lambda f, p: p if f is None else apply_factor(f.inv_mass, p), factors, momentum
        )

    def dot(a: PyTree, b: PyTree) -> jax.Array:
        return sum(jnp.sum(x * y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    # The integrator differentiates the kinetic energy; this rule hands it M^-1 p directly
    # instead of letting autodiff push the momentum through the square root twice.
    @jax.custom_jvp
    def kinetic(momentum: PyTree) -> jax.Array:
        return 0.5 * dot(momentum, velocity(momentum))

    @kinetic.defjvp
    def _kinetic_jvp(primals, tangents):
        (momentum,), (d_momentum,) = primals, tangents
        v = velocity(momentum)
        return 0.5 * dot(momentum, v), dot(d_momentum, v)

    def kinetic_energy(momentum: PyTree, position: PyTree | None = None) -> jax.Array:
        del position
        return kinetic(momentum)

    def check_turning(m_left, m_right, m_sum, position_left=None, position_right=None):
        del position_left, position_right
        rho = jax.tree.map(lambda s, r, lft: s - (r + lft) / 2, m_sum, m_right, m_left)
        return (dot(velocity(m_left), rho) <= 0) | (dot(velocity(m_right), rho) <= 0)

    def scale(position: PyTree, element: PyTree, *, inv: bool, trans: bool) -> PyTree:
        del position, trans  # every factor is symmetric
        if inv:
            return whiten_momentum(factors, element, scales)
        return _unwhiten(factors, element, scales)

    return Metric(sample_momentum, kinetic_energy, check_turning, scale)
