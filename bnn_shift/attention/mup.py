"""muP initialisation and per-tensor learning rates (REFERENCE §2.7), as optax helpers.

Every tensor gets a `TensorRule` from the module that owns it:

| tensor | init | learning-rate multiplier |
|---|---|---|
| `Linear` weight (q/k/v, feed-forward fc, ...) | N(0, 1/fan_in) | base/fan_in |
| structured `Core` (BTT WK/WQ, bilinear-MLR levels, dense bilinear) | N(0, 1/d_in) | base/d_in |
| names matching `zero` (default `*out_proj.weight`, the output projections) | 0 | base/fan_in |
| `Embedding` weights and names matching `embedding` (e.g. an ICL read-in) | N(0, 0.02²) | 1 |
| LayerNorm weights | 1 | 1 |
| biases | 0 | 1 |
| other arrays: vectors / tensors (fan_in = prod(shape[1:])) | kept | 1 / base/fan_in |

with base = 768. The multiplier scales the optimiser's learning rate per tensor (a learning-rate
schedule multiplies all of them). `mup_adamw` is the paper's optimiser: Adam with betas (0.9,
0.95), eps 1e-20, decoupled weight decay only on tensors with >= 2 dims (0 in every config).
Names are dotted parameter paths such as `blocks.0.attention.out_proj.weight`, matched with
shell-style globs.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from bnn_shift.attention.core import Core
from bnn_shift.attention.norm import LayerNorm
from bnn_shift.typing import PyTree

BASE_FAN_IN = 768.0
EMBEDDING_STD = 0.02
DEFAULT_ZERO = ("*out_proj.weight",)


@dataclass(frozen=True)
class TensorRule:
    """How one tensor is initialised ("normal" with `std`, "zeros", "ones", "keep") and the
    multiplier on the learning rate it trains with."""

    init: str
    std: float
    lr_scale: float


def path_name(path: tuple) -> str:
    """A jax key path -> dotted name (`attention.out_proj.weight`)."""
    return jax.tree_util.keystr(path, simple=True, separator=".")


def _is_unit(node: Any) -> bool:
    return isinstance(node, Core | eqx.nn.Linear | eqx.nn.Embedding | eqx.nn.LayerNorm | LayerNorm)


def _unit_rules(node: Any, base: float) -> dict[str, TensorRule]:
    """Rules for the arrays of one known module, keyed by field name."""
    if isinstance(node, Core):
        return {"weight": TensorRule("normal", 1 / math.sqrt(node.d_in), base / node.d_in)}
    if isinstance(node, eqx.nn.Linear):
        fan_in = node.weight.shape[1]
        return {
            "weight": TensorRule("normal", 1 / math.sqrt(fan_in), base / fan_in),
            "bias": TensorRule("zeros", 0.0, 1.0),
        }
    if isinstance(node, eqx.nn.Embedding):
        return {"weight": TensorRule("normal", EMBEDDING_STD, 1.0)}
    return {"weight": TensorRule("ones", 0.0, 1.0), "bias": TensorRule("zeros", 0.0, 1.0)}


def _generic_rule(leaf: jax.Array, base: float) -> TensorRule:
    if leaf.ndim < 2:
        return TensorRule("keep", 0.0, 1.0)
    return TensorRule("keep", 0.0, base / math.prod(leaf.shape[1:]))


def tensor_rules(
    model: PyTree,
    *,
    base: float = BASE_FAN_IN,
    zero: Sequence[str] | None = None,
    embedding: Sequence[str] = (),
) -> dict[str, TensorRule]:
    """Dotted parameter name -> `TensorRule` for every float array of `model`.

    zero: globs of tensors initialised to 0 (default `*out_proj.weight`); embedding: globs of
    tensors treated as embeddings (N(0, 0.02²), multiplier 1). Explicitly given globs must
    each match at least one tensor.
    """
    rules: dict[str, TensorRule] = {}
    for path, node in jax.tree_util.tree_flatten_with_path(model, is_leaf=_is_unit)[0]:
        if _is_unit(node):
            for field, rule in _unit_rules(node, base).items():
                if eqx.is_inexact_array(getattr(node, field, None)):
                    rules[path_name((*path, jax.tree_util.GetAttrKey(field)))] = rule
        elif eqx.is_inexact_array(node):
            rules[path_name(path)] = _generic_rule(node, base)
    for pattern in embedding:
        for name in _matching(rules, pattern, "embedding"):
            rules[name] = TensorRule("normal", EMBEDDING_STD, 1.0)
    for pattern in DEFAULT_ZERO if zero is None else zero:
        if zero is None:  # the default applies where it matches
            names = fnmatch.filter(rules, pattern)
        else:
            names = _matching(rules, pattern, "zero")
        for name in names:
            rules[name] = TensorRule("zeros", 0.0, rules[name].lr_scale)
    return rules


def _matching(rules: dict[str, TensorRule], pattern: str, what: str) -> list[str]:
    names = fnmatch.filter(rules, pattern)
    if not names:
        raise ValueError(
            f"{what} pattern {pattern!r} matches no parameter; names look like {sorted(rules)[:4]}"
        )
    return names


def mup_init(model: PyTree, key: jax.Array, **rule_options) -> PyTree:
    """The model with every float array re-drawn by its `TensorRule` ("keep" ones unchanged).

    rule_options go to `tensor_rules` (base, zero, embedding).
    """
    rules = tensor_rules(model, **rule_options)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(model)
    out = []
    for index, (path, leaf) in enumerate(leaves):
        rule = rules.get(path_name(path)) if eqx.is_inexact_array(leaf) else None
        if rule is None or rule.init == "keep":
            out.append(leaf)
        elif rule.init == "normal":
            draw = jax.random.normal(jax.random.fold_in(key, index), leaf.shape, leaf.dtype)
            out.append(rule.std * draw)
        elif rule.init == "zeros":
            out.append(jnp.zeros_like(leaf))
        else:
            out.append(jnp.ones_like(leaf))
    return jax.tree_util.tree_unflatten(treedef, out)


def _params(model: PyTree) -> PyTree:
    return eqx.filter(model, eqx.is_inexact_array)


def lr_multipliers(model: PyTree, **rule_options) -> PyTree:
    """Params-shaped pytree (None where the model has no float array) of per-tensor
    learning-rate multipliers."""
    rules = tensor_rules(model, **rule_options)
    return jax.tree_util.tree_map_with_path(
        lambda path, _: rules[path_name(path)].lr_scale, _params(model)
    )


def weight_decay_mask(model: PyTree) -> PyTree:
    """Params-shaped pytree of bools: True for tensors with >= 2 dims."""
    return jax.tree.map(lambda a: a.ndim >= 2, _params(model))


def scale_by_tensor_lr(multipliers: PyTree) -> optax.GradientTransformation:
    """Multiply each update leaf by its own constant (e.g. from `lr_multipliers`)."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, m: u * m, updates, multipliers), state

    return optax.GradientTransformation(init_fn, update_fn)


def mup_adamw(
    model: PyTree,
    learning_rate: float | optax.Schedule,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-20,
    weight_decay: float = 0.0,
    **rule_options,
) -> optax.GradientTransformation:
    """AdamW with per-tensor learning rates learning_rate · multiplier (REFERENCE §2.7).

    Use on `eqx.filter(model, eqx.is_inexact_array)`; learning_rate may be an optax schedule
    (e.g. `optax.warmup_cosine_decay_schedule`), which then multiplies every tensor's rate.
    """
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.add_decayed_weights(weight_decay, mask=weight_decay_mask(model)),
        scale_by_tensor_lr(lr_multipliers(model, **rule_options)),
        optax.scale_by_learning_rate(learning_rate),
    )
