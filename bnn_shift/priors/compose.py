"""Compose priors by parameter path, e.g. `by_path({"layers.0.weight": EmpCov(...), "*": g})`."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping

import equinox as eqx
import jax

from bnn_shift.models.params import path_to_str
from bnn_shift.priors.base import MassFactor, Part, Prior
from bnn_shift.typing import PyTree

DEFAULT = "*"

# A rule selects parameters by glob over the dotted path, by the type of a module that contains
# them (e.g. eqx.nn.Conv2d), or by a predicate (path, array) -> bool.
Selector = str | type | Callable[[str, jax.Array], bool]


def describe_selector(selector: Selector) -> str:
    if isinstance(selector, str):
        return selector
    if isinstance(selector, type):
        return f"<inside {selector.__name__}>"
    return f"<{getattr(selector, '__name__', 'predicate')}>"


def _containers(root: PyTree, path: tuple) -> list[object]:
    """The objects passed through on the way from `root` to a leaf (root included)."""
    node, seen = root, [root]
    for key in path[:-1]:
        if isinstance(key, jax.tree_util.GetAttrKey):
            node = getattr(node, key.name)
        elif isinstance(key, jax.tree_util.SequenceKey | jax.tree_util.DictKey):
            node = node[key.idx if isinstance(key, jax.tree_util.SequenceKey) else key.key]
        else:
            break
        seen.append(node)
    return seen


def selects(selector: Selector, root: PyTree, path: tuple, leaf: jax.Array) -> bool:
    """Whether a rule's selector picks the leaf at `path` of `root`."""
    if isinstance(selector, str):
        return fnmatch.fnmatchcase(path_to_str(path), selector)
    if isinstance(selector, type):
        return any(isinstance(obj, selector) for obj in _containers(root, path))
    return bool(selector(path_to_str(path), leaf))


class ByPath(Prior):
    """Each parameter gets the prior of the rule that selects it: a glob over its dotted path
    (`"layers.0.weight"`, `"conv*.bias"`), a module type containing it, or a predicate.

    Specific rules must not overlap; the catch-all `"*"` covers whatever they leave.
    """

    patterns: tuple[Selector, ...] = eqx.field(static=True)
    priors: tuple[Prior, ...]

    def __init__(self, rules: Mapping[Selector, Prior]):
        if not rules:
            raise ValueError("by_path needs at least one rule, e.g. {'*': Gaussian(0.1)}")
        for pattern, prior in rules.items():
            if not isinstance(prior, Prior):
                raise TypeError(
                    f"rule {describe_selector(pattern)!r} maps to {type(prior).__name__}, "
                    "not a Prior"
                )
            if not isinstance(pattern, str | type) and not callable(pattern):
                raise TypeError(f"rule key {pattern!r} is not a path glob, a type or a predicate")
        self.patterns = tuple(rules)
        self.priors = tuple(rules.values())

    def assign(self, params: PyTree) -> dict[Selector, list[int]]:
        """rule -> indices of the leaves it governs; errors on gaps, overlaps and dead rules."""
        flat = jax.tree_util.tree_flatten_with_path(params)[0]
        paths = [path_to_str(p) for p, _ in flat]
        specific = [p for p in self.patterns if p != DEFAULT]
        owners: dict[Selector, list[int]] = {p: [] for p in self.patterns}
        for i, (path, (key_path, leaf)) in enumerate(zip(paths, flat)):
            hits = [p for p in specific if selects(p, params, key_path, leaf)]
            if len(hits) > 1:
                names = [describe_selector(h) for h in hits]
                raise ValueError(f"parameter {path!r} is matched by several rules: {names}")
            if hits:
                owners[hits[0]].append(i)
            elif DEFAULT in owners:
                owners[DEFAULT].append(i)
            else:
                raise ValueError(
                    f"parameter {path!r} is matched by no rule; add a default rule '*': <prior>"
                )
        for pattern in specific:
            if not owners[pattern]:
                raise ValueError(
                    f"prior rule {describe_selector(pattern)!r} matches no parameter; "
                    f"parameter paths are {paths}"
                )
        return owners

    def children(self) -> tuple[Prior, ...]:
        return self.priors

    def split(self, params_like: PyTree) -> tuple[Part, ...]:
        """One part per rule that governs any leaf, in rule order (see `assign`)."""
        owners = self.assign(params_like)
        return tuple(
            Part(prior, tuple(owners[pattern]))
            for pattern, prior in zip(self.patterns, self.priors)
            if owners[pattern]
        )

    def _split(self, params: PyTree) -> list[tuple[Prior, PyTree]]:
        return [(part.prior, part.of(params)) for part in self.split(params)]

    def log_prob(self, params: PyTree) -> jax.Array:
        return sum(prior.log_prob(part) for prior, part in self._split(params))

    def log_prob_diff(self, new: PyTree, old: PyTree) -> jax.Array:
        pairs = zip(self._split(new), self._split(old))
        return sum(prior.log_prob_diff(a, b) for (prior, a), (_, b) in pairs)

    def sample(self, key: jax.Array, params_like: PyTree) -> PyTree:
        leaves, treedef = jax.tree.flatten(params_like)
        owners = self.assign(params_like)
        out = list(leaves)
        keys = jax.random.split(key, len(self.priors))
        for k, pattern, prior in zip(keys, self.patterns, self.priors):
            idx = owners[pattern]
            if idx:
                for i, draw in zip(idx, prior.sample(k, [leaves[i] for i in idx])):
                    out[i] = draw
        return jax.tree.unflatten(treedef, out)

    def preconditioner(self, params_like: PyTree) -> list[MassFactor | None]:
        leaves = jax.tree.leaves(params_like)
        owners = self.assign(params_like)
        out: list = [None] * len(leaves)
        for pattern, prior in zip(self.patterns, self.priors):
            idx = owners[pattern]
            if idx:
                factors = prior.preconditioner([leaves[i] for i in idx])
                for i, factor in zip(idx, factors):
                    out[i] = factor
        return out

    @property
    def trajectory_scale(self) -> float:
        """The largest of the rules' trajectory scales."""
        return max(prior.trajectory_scale for prior in self.priors)

    def describe(self) -> str:
        rules = zip(self.patterns, self.priors)
        return "\n".join(
            f"{describe_selector(pattern):>20s}: {prior.describe()}" for pattern, prior in rules
        )


def by_path(rules: Mapping[Selector, Prior]) -> ByPath:
    """Compose priors by glob pattern over dotted parameter paths (see `ByPath`)."""
    return ByPath(rules)
