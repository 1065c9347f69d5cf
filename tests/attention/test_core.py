"""Tests for bnn_shift.attention.core: the RMS cap, cores and N(0, 1/fan_in) linears."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.attention.core import Core, apply_linear, linear, rms_cap


def rms(a) -> float:
    return float(jnp.sqrt(jnp.mean(a * a)))


def test_rms_cap_shrinks_only_large_weights():
    d_in, d_out = 16, 4
    rho = math.sqrt(min(d_in, d_out)) / d_in
    big = jnp.full((d_in, d_out), 10 * rho)
    np.testing.assert_allclose(rms(rms_cap(big, d_in, d_out)), rho, rtol=1e-5)
    small = jnp.full((d_in, d_out), 0.5 * rho)
    np.testing.assert_array_equal(rms_cap(small, d_in, d_out), small)


def test_core_value_uses_cap_flag_and_init_scale():
    core = Core((64, 256), 64, 256, key=jax.random.key(0))
    # sample std of 16,384 normals is within 5 standard errors (1/sqrt(2n)) of 1/sqrt(d_in)
    assert abs(rms(core.weight) * math.sqrt(64) - 1) < 5 / math.sqrt(2 * core.weight.size)
    loud = Core((4, 4), 4, 4, key=jax.random.key(1), cap=False)
    loud = jax.tree.map(lambda w: 100 * w, loud)
    np.testing.assert_array_equal(loud.value(), loud.weight)


def test_linear_applies_rowwise_with_bias():
    layer = linear(3, 2, key=jax.random.key(0), use_bias=True)
    assert layer.weight.shape == (2, 3) and np.all(layer.bias == 0)
    x = jnp.arange(12.0).reshape(4, 3)
    np.testing.assert_allclose(apply_linear(layer, x), jax.vmap(layer)(x), rtol=1e-6)
