"""LeNet-5 variant of the covariate-shift paper (REFERENCE 1.6).

conv1 5×5×6 SAME → act → AvgPool 2/2 → conv2 5×5×16 VALID → act → AvgPool 2/2 → flatten
→ fc1 120 → act → fc2 84 → act → fc3 n_classes. 83,126 parameters on CIFAR-10, 61,706 on MNIST.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from bnn_shift.models.conv import conv2d
from bnn_shift.models.conv_stem import ConvStem
from bnn_shift.models.first_layer import FirstLayer

KERNEL_SIZE = 5
CONV1_CHANNELS = 6
CONV2_CHANNELS = 16
FC_SIZES = (120, 84)
POOL = 2
# SAME padding for the odd 5×5 kernel at stride 1.
CONV1_PADDING = KERNEL_SIZE // 2
# Smallest square side for which both conv/pool stages leave at least one pixel:
# s -> conv1 SAME -> s -> pool -> s//2 -> conv2 VALID -> s//2 - 4 -> pool -> (s//2 - 4)//2 >= 1.
MIN_IMAGE_SIZE = 2 * (KERNEL_SIZE - 1 + POOL)


def _spatial_after_convs(image_size: int) -> int:
    """Side length of the final feature map (after the second pool)."""
    s = image_size // POOL  # conv1 SAME keeps the size, pool halves (floor)
    s = s - (KERNEL_SIZE - 1)  # conv2 VALID
    return s // POOL if s >= POOL else 0


class LeNet5(ConvStem):
    """LeNet-5 mapping ONE channels-last image (H, W, C) to (n_classes,) logits.

    Parameters are `conv1.weight` (6, C, 5, 5), `conv1.bias` (6, 1, 1), `conv2.*`, `fc1.*`,
    `fc2.*`, `fc3.*` (Linear weights (out, in)). `jax.vmap` for batches (n, H, W, C).
    The flatten before fc1 is in equinox's (C, H, W) order.
    """

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear
    fc3: eqx.nn.Linear
    in_channels: int = eqx.field(static=True)
    n_classes: int = eqx.field(static=True)
    image_size: int = eqx.field(static=True)
    activation: Callable[[jax.Array], jax.Array] = eqx.field(static=True)
    conv1_kernel_size: int = eqx.field(static=True, default=KERNEL_SIZE)
    conv1_stride: int = eqx.field(static=True, default=1)
    conv1_padding: int = eqx.field(static=True, default=CONV1_PADDING)

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        *,
        image_size: int,
        key: jax.Array,
        activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
    ):
        if in_channels < 1 or n_classes < 2:
            raise ValueError(
                f"LeNet5 needs in_channels >= 1 and n_classes >= 2; "
                f"got in_channels={in_channels}, n_classes={n_classes}"
            )
        if image_size < MIN_IMAGE_SIZE:
            raise ValueError(
                f"LeNet5 needs image_size >= {MIN_IMAGE_SIZE} (minimum size for the two 5×5 "
                f"convs and 2×2 pools); got image_size={image_size}"
            )
        if not callable(activation):
            raise ValueError(f"LeNet5 activation must be callable; got {activation!r}")
        k1, k2, k3, k4, k5 = jax.random.split(key, 5)
        self.conv1 = eqx.nn.Conv2d(
            in_channels, CONV1_CHANNELS, KERNEL_SIZE, stride=1, padding=CONV1_PADDING, key=k1
        )
        self.conv2 = eqx.nn.Conv2d(CONV1_CHANNELS, CONV2_CHANNELS, KERNEL_SIZE, padding=0, key=k2)
        side = _spatial_after_convs(image_size)
        flat = CONV2_CHANNELS * side * side
        self.fc1 = eqx.nn.Linear(flat, FC_SIZES[0], key=k3)
        self.fc2 = eqx.nn.Linear(FC_SIZES[0], FC_SIZES[1], key=k4)
        self.fc3 = eqx.nn.Linear(FC_SIZES[1], n_classes, key=k5)
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.image_size = image_size
        self.activation = activation
        self.conv1_kernel_size = KERNEL_SIZE
        self.conv1_stride = 1
        self.conv1_padding = CONV1_PADDING

    @property
    def first_layer(self) -> FirstLayer:
        """`conv1.weight`: 5×5 windows, stride 1, SAME (= 2 pixels) zero padding."""
        return FirstLayer(
            "conv1.weight", "conv", self.conv1_kernel_size, self.conv1_stride, self.conv1_padding
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """(H, W, C) one channels-last example -> (n_classes,) logits."""
        self._check_input(x)
        pool = eqx.nn.AvgPool2d(POOL, stride=POOL)
        h = jnp.transpose(x, (2, 0, 1))  # equinox convs are (C, H, W)
        h = pool(self.activation(conv2d(self.conv1, h)))
        h = pool(self.activation(conv2d(self.conv2, h)))
        h = jnp.reshape(h, (-1,))
        h = self.activation(self.fc1(h))
        h = self.activation(self.fc2(h))
        return self.fc3(h)


def lenet5_mnist(key: jax.Array, **kwargs) -> LeNet5:
    """LeNet-5 for 28×28×1 MNIST, 10 classes: 61,706 parameters."""
    return LeNet5(1, 10, image_size=28, key=key, **kwargs)


def lenet5_cifar(key: jax.Array, **kwargs) -> LeNet5:
    """LeNet-5 for 32×32×3 CIFAR-10, 10 classes: 83,126 parameters."""
    return LeNet5(3, 10, image_size=32, key=key, **kwargs)
