"""The `Prior` protocol: a pytree-aware log density with a sampler and an HMC preconditioner."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.typing import PyTree


class MassFactor(NamedTuple):
    """Symmetric square root A (d, d) of a leaf's inverse mass matrix M^-1 = A A, acting on the
    leaf's last axis, with its inverse. HMC with it is HMC in coordinates z where theta = A z."""

    sqrt_inv_mass: jax.Array  # (d, d)
    sqrt_mass: jax.Array  # (d, d)
    inv_mass: jax.Array  # (d, d) = sqrt_inv_mass @ sqrt_inv_mass, precomputed in float64


class Part(NamedTuple):
    """A prior composed into another, over some of the leaves the other is given: its
    `log_prob` of those leaves enters the other's multiplied by `weight`."""

    prior: Prior
    leaves: tuple[int, ...]  # positions in the composing prior's leaf order
    weight: float = 1.0

    def of(self, params: PyTree) -> PyTree:
        """The parameters this part governs: `params` itself when that is every leaf (so the
        part can still select by path), else the list of its leaves."""
        leaves = jax.tree.leaves(params)
        if self.leaves == tuple(range(len(leaves))):
            return params
        return [leaves[i] for i in self.leaves]


class Prior(eqx.Module):
    """A prior over a parameter pytree.

    Subclasses implement `log_prob`, `log_prob_diff`, `sample`, `scale` (or
    `trajectory_scale`) and `describe`; `preconditioner` defaults to the identity mass matrix.
    Priors built from others (`ByPath`, `Temperature`) list them in `children` and say in
    `split` which leaves each one governs.
    """

    def log_prob(self, params: PyTree) -> jax.Array:
        """Normalised log density of `params` -> scalar."""
        raise NotImplementedError

    def log_prob_diff(self, new: PyTree, old: PyTree) -> jax.Array:
        """log p(new) - log p(old), formed term by term so float32 keeps its precision."""
        raise NotImplementedError

    def sample(self, key: jax.Array, params_like: PyTree) -> PyTree:
        """A draw from the prior with the structure, shapes and dtypes of `params_like`."""
        raise NotImplementedError

    @property
    def scale(self) -> float:
        """The prior's own scale setting, e.g. a Gaussian's standard deviation."""
        raise NotImplementedError(
            f"{type(self).__name__} has no scale setting of its own; HMC's trajectory hint is "
            "its trajectory_scale"
        )

    @property
    def trajectory_scale(self) -> float:
        """A typical parameter standard deviation under the prior, the length HMC's default
        trajectory is set from; `scale` unless the prior says otherwise."""
        return self.scale

    def children(self) -> tuple[Prior, ...]:
        """The priors this one is built from, directly; empty for a prior built from none."""
        return ()

    def split(self, params_like: PyTree) -> tuple[Part, ...]:
        """How `log_prob` of `params_like` divides among `children`: by default each child
        governs every leaf, with weight 1."""
        every = tuple(range(len(jax.tree.leaves(params_like))))
        return tuple(Part(child, every) for child in self.children())

    def walk(self) -> Iterator[Prior]:
        """This prior, then every prior it is built from, depth first."""
        yield self
        for child in self.children():
            yield from child.walk()

    def preconditioner(self, params_like: PyTree) -> list[MassFactor | None]:
        """One `MassFactor` (or None for the identity) per leaf of `params_like`, in leaf order."""
        return [None] * len(jax.tree.leaves(params_like))

    def describe(self) -> str:
        """One readable line about this prior."""
        return repr(self)


class FactorisedPrior(Prior):
    """A prior that draws every parameter independently from one numpyro distribution."""

    def distribution(self):
        """The numpyro distribution of a single parameter."""
        raise NotImplementedError

    def log_prob(self, params: PyTree) -> jax.Array:
        dist = self.distribution()
        return sum(jnp.sum(dist.log_prob(leaf)) for leaf in leaves_of(params))

    def sample(self, key: jax.Array, params_like: PyTree) -> PyTree:
        leaves, treedef = jax.tree.flatten(params_like)
        keys = jax.random.split(key, len(leaves))
        dist = self.distribution()
        draws = [dist.sample(k, leaf.shape).astype(leaf.dtype) for k, leaf in zip(keys, leaves)]
        return jax.tree.unflatten(treedef, draws)


def leaves_of(params: PyTree) -> list[jax.Array]:
    """Array leaves of a pytree; an error when there are none."""
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("the prior was given no parameters (an empty pytree)")
    return leaves


def check_finite_array(name: str, value: np.ndarray) -> None:
    """Raise a clear error when a prior's setting holds NaN or inf."""
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} contains NaN or inf; priors need finite settings")
