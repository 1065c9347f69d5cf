"""Tests for bnn_shift.attention.block: the pre-LN transformer block, also under HMC."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from bnn_shift.attention import (
    Full,
    LayerNorm,
    MultiHeadAttention,
    SequenceMLR,
    StandardScorer,
    TransformerBlock,
)
from bnn_shift.attention.core import apply_linear, linear
from bnn_shift.inference import hmc
from bnn_shift.priors import Gaussian

from .helpers import layer_norm, random_module, tokens

D, H, T = 8, 2, 4


def block(seed: int = 0, structure=None) -> TransformerBlock:
    scorer = random_module(StandardScorer, D, H, seed=seed)
    structure = SequenceMLR((2, 2)) if structure is None else structure
    attention = MultiHeadAttention(scorer, structure, key=jax.random.key(seed))
    return TransformerBlock(attention, key=jax.random.key(seed + 1), mlp_ratio=2)


def test_pre_layernorm_residual_composition():
    b = block(structure=Full())
    b = eqx.tree_at(lambda m: m.norm2.weight, b, jnp.linspace(0.5, 1.5, D))
    x = tokens((T, D), 0)
    out, attended = eqx.filter_jit(lambda b, x, y: (b(x), b.attention(y)))(b, x, layer_norm(x))
    h = x + np.asarray(attended, np.float64)
    u = layer_norm(h, b.norm2.weight) @ np.asarray(b.mlp.fc.weight, np.float64).T
    gelu = 0.5 * u * (1 + erf(u / np.sqrt(2)))  # the exact GELU
    expected = h + gelu @ np.asarray(b.mlp.out_proj.weight, np.float64).T
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    assert b.mlp.fc.weight.shape == (2 * D, D)


class TinyClassifier(eqx.Module):
    """Tokens (T, 3) -> read-in -> one block -> LayerNorm -> mean over positions -> 2 logits."""

    read_in: eqx.nn.Linear
    block: TransformerBlock
    norm: LayerNorm
    head: eqx.nn.Linear

    def __init__(self, *, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.read_in = linear(3, D, key=k1)
        # a lean block (one head, no QK-LN, MLP width D): the HMC driver compiles it three times
        scorer = StandardScorer(D, 1, key=k2, qk_norm=False)
        attention = MultiHeadAttention(scorer, Full(), key=k3)
        self.block = TransformerBlock(attention, key=k4, mlp_ratio=1)
        self.norm = LayerNorm(D)
        self.head = linear(D, 2, key=k2)

    def __call__(self, x):
        h = self.block(apply_linear(self.read_in, x))
        return apply_linear(self.head, jnp.mean(self.norm(h), axis=0))


@pytest.mark.slow
def test_a_model_built_from_blocks_runs_under_hmc():
    x = tokens((24, T, 3), 1)
    y = (x[:, :, 0].sum(1) > 0).astype(np.int32)
    run = hmc(
        random_module(TinyClassifier, seed=0),  # numpy-drawn weights: nothing to compile
        Gaussian(0.5),
        x,
        y,
        step_size=2e-3,
        trajectory_length=6e-3,
        n_iterations=2,
        n_burnin=1,
        seed=0,
        progress=False,
    )
    assert run.stats["energy"].shape == (2, 1)
    assert np.all(np.isfinite(run.stats["energy"])) and not np.any(run.stats["diverging"])
    assert np.any(run.stats["accepted"][1:])
    probs = run.predict_proba(x)
    assert probs.shape == (24, 2)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
