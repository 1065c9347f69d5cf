"""Tests for bnn_shift.attention.norm: LayerNorm over the last axis."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.attention.norm import LayerNorm

from .helpers import layer_norm


def test_matches_float64_reference_on_any_leading_shape():
    x = jax.random.normal(jax.random.key(0), (2, 3, 5)) * 3 + 1
    norm = LayerNorm(5)
    norm = jax.tree.map(lambda w: w * jnp.arange(1.0, 6.0), norm)
    np.testing.assert_allclose(norm(x), layer_norm(x, np.arange(1.0, 6.0)), rtol=1e-5, atol=1e-5)
    assert LayerNorm(5, use_weight=False).weight is None


def test_wrong_width_is_a_clear_error():
    with pytest.raises(ValueError, match="last axis"):
        LayerNorm(4)(jnp.ones((3, 5)))
