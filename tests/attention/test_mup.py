"""Tests for bnn_shift.attention.mup: muP initialisation and per-tensor learning rates."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bnn_shift.attention import (
    BilinearMLRScorer,
    BTTScorer,
    MultiHeadAttention,
    TransformerBlock,
    lr_multipliers,
    mup_adamw,
    mup_init,
    tensor_rules,
    weight_decay_mask,
)

from .helpers import random_module, tokens

D, H = 16, 2


class Embedded(eqx.Module):
    """An embedding, a read-in and a block: the tensors a model adds around the layers."""

    embed: eqx.nn.Embedding
    read_in: eqx.nn.Linear
    block: TransformerBlock

    def __init__(self, scorer, *, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.embed = eqx.nn.Embedding(5, D, key=k1)
        self.read_in = eqx.nn.Linear(3, D, key=k2)
        self.block = TransformerBlock(MultiHeadAttention(scorer, key=k3), key=k4, use_bias=True)


@pytest.fixture(scope="module")
def btt_model():
    return random_module(Embedded, random_module(BTTScorer, D, H), seed=1)


def test_rules_follow_the_papers_table(btt_model):
    rules = tensor_rules(btt_model, embedding=("read_in.weight",))
    # BTT at D = 16: (a, b) = (c, d) = (2, 8); WK fan-in d = 8, WQ fan-in c·s = 2
    assert rules["block.attention.scorer.wk.weight"].lr_scale == 768 / 8
    assert rules["block.attention.scorer.wq.weight"].std == pytest.approx(1 / math.sqrt(2))
    assert rules["block.attention.value.weight"].lr_scale == 768 / D
    assert rules["block.mlp.fc.weight"].std == pytest.approx(1 / 4)
    assert rules["block.mlp.out_proj.weight"].init == "zeros"
    assert rules["block.mlp.out_proj.weight"].lr_scale == 768 / (4 * D)
    assert rules["block.attention.out_proj.weight"].init == "zeros"
    assert rules["block.norm1.weight"].init == "ones" and rules["block.norm1.weight"].lr_scale == 1
    assert rules["block.mlp.fc.bias"].init == "zeros" and rules["block.mlp.fc.bias"].lr_scale == 1
    for name in ("embed.weight", "read_in.weight"):
        assert (rules[name].init, rules[name].std, rules[name].lr_scale) == ("normal", 0.02, 1.0)
    assert rules["read_in.bias"].init == "zeros"


def test_bilinear_mlr_levels_get_lr_768_p_over_d():
    scorer = random_module(BilinearMLRScorer, D, H, (4, 2, 2))
    rules = tensor_rules(scorer)
    for level, p in enumerate((1, 2, 4)):
        assert rules[f"wq.{level}.weight"].lr_scale == pytest.approx(768 * p / D)
        assert rules[f"wk.{level}.weight"].std == pytest.approx(math.sqrt(p / D))


def test_mup_init_draws_by_the_rules():
    scorer = random_module(BTTScorer, 64, 4)  # (a, b) = (4, 16): WK (4, 16, 64), fan-in 16
    model = random_module(MultiHeadAttention, scorer)
    fresh = eqx.filter_jit(mup_init)(model, jax.random.key(1))
    assert np.all(fresh.out_proj.weight == 0) and np.all(fresh.scorer.key_norm.weight == 1)
    value = np.asarray(fresh.value.weight)  # (64, 64), fan-in 64
    assert abs(value.std() * math.sqrt(64) - 1) < 5 / math.sqrt(2 * value.size)
    wk = np.asarray(fresh.scorer.wk.weight)
    # the sample std of n normals is within 5 standard errors (std/sqrt(2n)) of the truth
    assert abs(wk.std() * math.sqrt(16) - 1) < 5 / math.sqrt(2 * wk.size)
    wq = np.asarray(fresh.scorer.wq.weight)  # (64, 4, 4), fan-in c·s = 4
    assert abs(wq.std() * math.sqrt(4) - 1) < 5 / math.sqrt(2 * wq.size)


def test_adamw_first_step_moves_each_tensor_by_its_own_learning_rate(btt_model):
    params = eqx.filter(btt_model, eqx.is_inexact_array)
    x = tokens((4, D), 0)
    loss = lambda p: jnp.sum(jnp.sin(eqx.combine(p, btt_model).block(x))) + jnp.sum(p.embed.weight)
    lr, decay = 1e-3, 0.1
    opt = mup_adamw(btt_model, optax.constant_schedule(lr), weight_decay=decay)

    @jax.jit
    def step(params):
        grads = jax.grad(loss)(params)
        updates, _ = opt.update(grads, opt.init(params), params)
        return grads, updates

    grads, updates = step(params)
    mults, decayed = lr_multipliers(btt_model), weight_decay_mask(btt_model)
    # Adam's first step is g/|g| = sign(g); decoupled decay adds decay·θ on >= 2-dim tensors
    trees = (grads, updates, mults, decayed, params)
    for g, u, m, d, p in zip(*(jax.tree.leaves(t) for t in trees), strict=True):
        expected = -lr * m * (np.sign(g) + (decay * np.asarray(p) if d else 0.0))
        np.testing.assert_allclose(u, expected, rtol=1e-5, atol=1e-12)
    assert jax.tree.leaves(decayed).count(False) > 0  # LayerNorm weights and biases


def test_pattern_errors():
    scorer = random_module(BilinearMLRScorer, D, H, (8,))
    with pytest.raises(ValueError, match="matches no parameter"):
        tensor_rules(scorer, zero=("*out_proj.weight",))
    # the default pattern may match nothing
    assert all(r.init != "zeros" for r in tensor_rules(scorer).values())
