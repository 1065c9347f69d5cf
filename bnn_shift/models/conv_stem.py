"""The first convolution of the image models (LeNet-5, ResNet-20-FRN): the patches it reads,
the one-example input check and its channels-last application.

Priors that look at the data through the first layer (EmpCov) read its `PatchSpec`; the models
themselves map ONE channels-last image (H, W, C) and are batched with `jax.vmap`.
"""

from __future__ import annotations

import abc
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp


class PatchSpec(NamedTuple):
    """How the first conv reads its input: square `kernel_size`, `stride`, zero `padding`
    on each spatial side, over `in_channels` channels (weights are (out, in, k, k))."""

    kernel_size: int
    stride: int
    padding: int
    in_channels: int


class ConvStem(eqx.Module):
    """An image model whose first layer is the conv `conv1`, fed one channels-last example
    of shape (image_size, image_size, in_channels)."""

    conv1: eqx.AbstractVar[eqx.nn.Conv2d]
    in_channels: eqx.AbstractVar[int]
    image_size: eqx.AbstractVar[int]

    @abc.abstractmethod
    def first_layer_patch_spec(self) -> PatchSpec:
        """The patches `conv1` sees: k×k windows, stride, zero padding, input channels."""

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
        return jnp.transpose(self.conv1(jnp.transpose(x, (2, 0, 1))), (1, 2, 0))
