"""The first convolution of the image models (LeNet-5, ResNet-20-FRN): where it is and the
patches it reads (`first_layer`), the one-example input check and its channels-last application.

The models map ONE channels-last image (H, W, C) and are batched with `jax.vmap`.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

from bnn_shift.models.conv import conv2d
from bnn_shift.models.first_layer import FirstLayer


class ConvStem(eqx.Module):
    """An image model whose first layer is the conv `conv1`, fed one channels-last example
    of shape (image_size, image_size, in_channels)."""

    conv1: eqx.AbstractVar[eqx.nn.Conv2d]
    in_channels: eqx.AbstractVar[int]
    image_size: eqx.AbstractVar[int]

    @property
    @abc.abstractmethod
    def first_layer(self) -> FirstLayer:
        """`conv1`: its weight's path and the k×k windows, stride and zero padding it reads."""

    def _check_input(self, x: jax.Array) -> None:
        expected = (self.image_size, self.image_size, self.in_channels)
        if x.shape != expected:
            raise ValueError(
                f"{type(self).__name__} expects one channels-last example of shape {expected}; "
                f"got {x.shape} (use jax.vmap for batches)"
            )

    def first_conv(self, x: jax.Array) -> jax.Array:
        """(H, W, C) one example -> (H, W, out) conv1 pre-activations, channels-last."""
        self._check_input(x)
        return jnp.transpose(conv2d(self.conv1, jnp.transpose(x, (2, 0, 1))), (1, 2, 0))
