"""KFAC factors for hessian="kron": per selected `eqx.nn.Linear` or `eqx.nn.Conv2d` (weight
with its bias) the factors G (out, out) and A (in', in') of its GGN block G kron A, collected by
tapping the layers in one forward pass, and the layer's `KronBlock` with the prior added exactly.

A convolution is a dense layer applied at every output position t to the patch under it: KFC
(Grosse & Martens 2016) treats positions as independent, so G sums J_t^T Lambda J_t over
examples and positions and A averages [patch_t, 1][patch_t, 1]^T over both."""

from __future__ import annotations

from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.inference.laplace.curvature import KronBlock, KronLayer
from bnn_shift.inference.laplace.gauss_newton import _batches, _n_outputs, _output_precisions
from bnn_shift.inference.likelihood import Likelihood
from bnn_shift.models.conv import conv2d, zero_padding
from bnn_shift.models.params import combine_params
from bnn_shift.typing import PyTree

LAYERS = (eqx.nn.Linear, eqx.nn.Conv2d)


class _Tap:
    """Stands in for a selected layer in one forward pass: adds a zero probe to its outputs
    (so d f / d probe is the Jacobian by the layer's outputs) and records its input."""

    def __init__(self, layer: eqx.Module, probe: jax.Array, seen: list):
        self.layer, self.probe, self.seen = layer, probe, seen

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        self.seen.append(x)
        return _apply(self.layer, x) + self.probe


def _apply(layer: eqx.Module, x: jax.Array) -> jax.Array:
    """The layer on one example, convolutions along the models' conv path."""
    return conv2d(layer, x) if isinstance(layer, eqx.nn.Conv2d) else layer(x)


def _node(root: PyTree, keys: tuple) -> Any:
    """The node of `root` at a jax key path."""
    for key in keys:
        if isinstance(key, jax.tree_util.GetAttrKey):
            root = getattr(root, key.name)
        elif isinstance(key, jax.tree_util.SequenceKey):
            root = root[key.idx]
        else:
            root = root[key.key]
    return root


def _replace_nodes(root: PyTree, paths: list[tuple], new: list) -> Any:
    """`root` with the nodes at the key paths replaced (the root itself for the path ())."""
    if () in paths:
        return new[paths.index(())]
    return eqx.tree_at(lambda m: [_node(m, keys) for keys in paths], root, new)


def _tapped_forward(model, layers, probes, xi):
    """f(xi) with the layers tapped -> (f, [each layer's input])."""
    seen = [[] for _ in layers]
    taps = [_Tap(_node(model, layer.keys), p, s) for layer, p, s in zip(layers, probes, seen)]
    f = _replace_nodes(model, [layer.keys for layer in layers], taps)(xi).astype(jnp.float32)
    if any(len(s) != 1 for s in seen):
        raise ValueError("hessian='kron' needs each selected layer called once per example")
    return f, [s[0] for s in seen]


def _layer_inputs(layer: eqx.Module, a: jax.Array, bias: bool) -> jax.Array:  # (b, in', T)
    """The rows A averages: the input (dense; T = 1) or every patch (conv), with a 1 for the
    bias; patches flattened (C, kh, kw) like the kernel's rows."""
    if isinstance(layer, eqx.nn.Conv2d):
        rows = jax.lax.conv_general_dilated_patches(
            a, layer.kernel_size, layer.stride, zero_padding(layer, a.shape[2:]),
            precision=jax.lax.Precision.HIGHEST,
        )  # fmt: skip
        rows = rows.reshape(len(a), rows.shape[1], -1)
    else:
        rows = a.reshape(len(a), -1, 1)
    if bias:
        rows = jnp.concatenate([rows, jnp.ones((len(a), 1, rows.shape[2]))], axis=1)
    return rows


def _tapped_jacobians(
    model: PyTree, layers: tuple[KronLayer, ...], x: jax.Array
) -> tuple[jax.Array, list[jax.Array], list[jax.Array]]:
    """Outputs f (b, k) and, per layer, the Jacobian of f by its outputs (b, k, out, T) and the
    rows its weight multiplies (b, in', T; `_layer_inputs`, ones for a bias alone)."""
    zeros = [jnp.zeros(()) for _ in layers]
    shapes = jax.eval_shape(
        lambda xi: _tapped_forward(model, layers, zeros, xi)[1], x[0]
    )  # each layer's input; its output shape follows by running it
    probes = [
        jnp.zeros(jax.eval_shape(partial(_apply, _node(model, layer.keys)), s).shape)
        for layer, s in zip(layers, shapes)
    ]

    def tapped(probes, xi):
        f, inputs = _tapped_forward(model, layers, probes, xi)
        return f, (f, inputs)

    jac, (f, inputs) = jax.vmap(jax.jacrev(tapped, has_aux=True), in_axes=(None, 0))(probes, x)
    jacobians, rows = [], []
    for layer, js, a in zip(layers, jac, inputs):
        js = js.reshape(*js.shape[:3], -1)  # (b, k, out, T)
        jacobians.append(js)
        rows.append(
            _layer_inputs(_node(model, layer.keys), a, layer.bias)
            if layer.weight
            else jnp.ones((len(x), 1, js.shape[-1]))
        )
    return f, jacobians, rows


@eqx.filter_jit
def _kron_chunk(
    params: PyTree,
    static: PyTree,
    likelihood: Likelihood,
    layers: tuple[KronLayer, ...],
    x: jax.Array,
    y: jax.Array,
) -> list[tuple[jax.Array, jax.Array]]:
    """Per layer, (sum over examples and positions of J_t^T Lambda_i J_t (out, out), sum over
    examples of the mean over positions of a~_t a~_t^T (in', in')) over a chunk."""
    f, jacobians, rows = _tapped_jacobians(combine_params(params, static), layers, x)
    lam = _output_precisions(likelihood, f, y)
    out = []
    for js, a in zip(jacobians, rows):
        g = jnp.einsum("bkot,bkl,blpt->op", js, lam, js, precision="highest")
        a_sum = jnp.einsum("bit,bjt->ij", a, a, precision="highest") / a.shape[-1]
        out.append((g, a_sum))
    return out


def kron_factors(
    params: PyTree,
    static: PyTree,
    likelihood: Likelihood,
    x: np.ndarray,
    y: np.ndarray,
    layers: tuple[KronLayer, ...],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer the KFAC factors (G (out, out) = sum_i J_s^T Lambda_i J_s, A (in', in') =
    mean_i a~ a~^T), float64, so that its GGN block is about G kron A."""
    sums = None
    width = sum(_node(params, layer.keys).weight.shape[0] for layer in layers)  # outputs
    for xb, yb in _batches(x, y, _n_outputs(params, static, x) * (width + 1)):
        chunk = _kron_chunk(params, static, likelihood, layers, xb, yb)
        chunk = [(np.asarray(g, np.float64), np.asarray(a, np.float64)) for g, a in chunk]
        sums = (
            chunk if sums is None else [(g + cg, a + ca) for (g, a), (cg, ca) in zip(sums, chunk)]
        )
    return [(g, a / len(x)) for g, a in sums]


def _kron_layers(params: PyTree, selected: tuple[int, ...]) -> dict[KronLayer, list[int]]:
    """Selected leaves that are the weight (2-D dense, 4-D conv) or the bias of a layer in
    `LAYERS`, by layer -> their positions in `selected`."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    owners: dict[tuple, dict[str, int]] = {}
    for at, i in enumerate(selected):
        keys, leaf = flat[i]
        name = getattr(keys[-1], "name", None)
        layer = _node(params, keys[:-1])
        if isinstance(layer, LAYERS) and name in ("weight", "bias"):
            if name == "bias" or leaf.ndim == (4 if isinstance(layer, eqx.nn.Conv2d) else 2):
                owners.setdefault(keys[:-1], {})[name] = at
    return {
        KronLayer(keys, "weight" in parts, "bias" in parts): sorted(parts.values())
        for keys, parts in owners.items()
    }


def _kron_block(
    layer: KronLayer,
    factors: tuple[np.ndarray, np.ndarray],
    rows: list[np.ndarray],
    out: int,
) -> KronBlock:
    """The layer's KFAC block: prior row precision blockdiag(R_weight, r_bias) over [w_o, b_o]."""
    in_w = len(factors[1]) - layer.bias
    r_parts = ([rows[0] if len(rows[0]) == in_w else rows[0][0, 0] * np.eye(in_w)]
               if layer.weight else []) + ([rows[-1]] if layer.bias else [])  # fmt: skip
    r = np.zeros((len(factors[1]),) * 2)
    at = 0
    for part in r_parts:
        r[at : at + len(part), at : at + len(part)] = part
        at += len(part)
    index = ([np.arange(out * in_w).reshape(out, in_w)] if layer.weight else []) + (
        [out * in_w * layer.weight + np.arange(out)[:, None]] if layer.bias else []
    )
    return KronBlock(factors[0], factors[1], r, np.concatenate(index, axis=1).ravel(), layer)
