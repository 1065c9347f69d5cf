"""ConvStem: the shared input check and channels-last first conv of the image models."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.models.conv_stem import ConvStem
from bnn_shift.models.first_layer import FirstLayer


class _Stem(ConvStem):
    conv1: eqx.nn.Conv2d
    in_channels: int = eqx.field(static=True)
    image_size: int = eqx.field(static=True)

    def __init__(self, key: jax.Array):
        self.conv1 = eqx.nn.Conv2d(2, 3, 3, stride=2, padding=1, key=key)
        self.in_channels = 2
        self.image_size = 6

    @property
    def first_layer(self) -> FirstLayer:
        return FirstLayer("conv1.weight", "conv", 3, 2, 1)


def test_first_conv_is_the_conv_in_channels_last_layout():
    stem = _Stem(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (6, 6, 2))  # (H, W, C)
    got = stem.first_conv(x)  # (3, 3, 3) with stride 2
    want = jnp.moveaxis(stem.conv1(jnp.moveaxis(x, -1, 0)), 0, -1)
    assert got.shape == (3, 3, 3)
    # equal up to float32 rounding: on CPU the conv runs as a matmul (bnn_shift.models.conv)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 6, 6, 2), (6, 6, 3), (5, 6, 2)])
def test_wrong_shape_names_the_model_and_the_fix(shape):
    stem = _Stem(jax.random.key(0))
    with pytest.raises(ValueError, match=r"_Stem expects .* \(6, 6, 2\).*jax\.vmap"):
        stem.first_conv(jnp.zeros(shape))
