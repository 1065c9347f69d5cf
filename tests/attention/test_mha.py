"""Tests for bnn_shift.attention.mha: multi-head attention from a scorer and a structure."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.attention import (
    BilinearMLRScorer,
    BTTScorer,
    DenseScorer,
    Full,
    GlobalSlidingWindow,
    MultiHeadAttention,
    SequenceMLR,
    SlidingWindow,
    StandardScorer,
)

from .helpers import random_module, tokens

D, H, T = 8, 2, 8
SCORERS = {
    "standard": (StandardScorer, {}),
    "dense": (DenseScorer, {}),
    "btt": (BTTScorer, {}),
    "bilinear_mlr": (BilinearMLRScorer, {"ranks": (2, 2)}),
}
STRUCTURES = {
    "full": Full(),
    "sliding_window": SlidingWindow(2),
    "global_sliding_window": GlobalSlidingWindow(2, 2),
    "mlr": SequenceMLR((2, 1, 1), normalize="count"),
}
# every scorer and every structure once (scorers are position-free: causality is the structure's)
COMBOS = [
    ("standard", "mlr"),
    ("dense", "sliding_window"),
    ("btt", "full"),
    ("bilinear_mlr", "global_sliding_window"),
]


def build(scorer: str, structure, seed: int = 0, **kwargs) -> MultiHeadAttention:
    cls, options = SCORERS[scorer]
    return MultiHeadAttention(
        random_module(cls, D, H, seed=seed, **options),
        structure,
        key=jax.random.key(seed),
        **kwargs,
    )


@eqx.filter_jit
def outputs_and_grads(layer, x, x_changed):
    loss = lambda both: jnp.sum(jnp.sin(both[0](both[1])))
    return layer(x), layer(x_changed), eqx.filter_grad(loss)((layer, x))


@pytest.mark.parametrize(("scorer", "structure"), COMBOS)
def test_causal_attention_ignores_the_future_and_has_finite_gradients(scorer, structure):
    layer = build(scorer, STRUCTURES[structure])
    x = tokens((T, D), 1)
    changed = x.copy()
    changed[5:] += tokens((T - 5, D), 2)
    out, out_changed, (grads, grad_x) = outputs_and_grads(layer, x, changed)
    assert out.shape == (T, D)
    np.testing.assert_allclose(out_changed[:5], out[:5], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out_changed[5:], out[5:])
    leaves = [*jax.tree.leaves(grads), grad_x]
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert any(np.any(g != 0) for g in jax.tree.leaves(grads.scorer))


def test_matches_a_reference_multi_head_attention():
    layer = build("standard", Full(), seed=3, d_value=3)
    x = tokens((T, D), 4)
    run = eqx.filter_jit(lambda m, x: (m(x), m.attention_weights(x), m.scorer(x)))
    out, attention_weights, logits = run(layer, x)
    logits = np.asarray(logits, np.float64)  # (H, T, T), tested in test_standard
    logits = np.where(np.tril(np.ones((T, T), bool)), logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    v = (x @ np.asarray(layer.value.weight, np.float64).T).reshape(T, H, 3)
    heads = np.einsum("hts,shd->thd", weights, v).reshape(T, H * 3)
    expected = heads @ np.asarray(layer.out_proj.weight, np.float64).T
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(attention_weights, weights, rtol=1e-4, atol=1e-6)


def test_batches_by_vmap_and_rejects_batched_input():
    layer = build("standard", Full())
    xb = tokens((3, T, D), 5)
    batched = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))(layer, xb)
    np.testing.assert_allclose(batched[1], layer(xb[1]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"jax\.vmap"):
        layer(xb)
