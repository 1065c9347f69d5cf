"""ResNet-20 with filter response normalisation and swish (ResNet-20-FRN, REFERENCE 1.6).

The covariate-shift paper's CIFAR-10 network (bnn_hmc `resnet20_frn_swish`): a 3×3 stem conv,
then 3 stages × 3 residual blocks at widths 16/32/64 (the first block of stages 2 and 3 halves
the resolution with stride 2 and projects the shortcut with a 1×1 conv), global average pooling
and a dense layer. Every conv has a bias and is followed by FRN + TLU; swish follows the stem,
the first conv of each block and each residual sum. He-normal weights (variance 2/fan_in,
truncated at 2 std, as haiku's VarianceScaling(2, fan_in, truncated_normal)), zero biases.
274,042 parameters on CIFAR-10 (32×32×3, 10 classes), 273,754 on MNIST (28×28×1).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.models.conv import conv2d
from bnn_shift.models.conv_stem import ConvStem
from bnn_shift.models.first_layer import FirstLayer

DEPTH = 20  # 6n + 2 layers with n = 3 blocks per stage
N_STAGES = 3
WIDTH = 16  # channels of stage 1; doubled at each later stage
KERNEL_SIZE = 3
FRN_EPS = 1e-6
# FRN over a 1×1 map sends every value to ±1; a final map of at least 2×2 needs side >= 5
# (the side after the two stride-2 stages is ceil(ceil(s / 2) / 2)).
MIN_IMAGE_SIZE = 5

# std of a unit normal truncated to [-2, 2]; dividing by it restores unit variance
TRUNCATED_STD = 0.87962566103423978


def numpy_rng(key: jax.Array) -> np.random.Generator:
    """A numpy generator seeded from a jax key (typed or raw uint32), deterministically."""
    is_typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    data = jax.random.key_data(key) if is_typed else key
    return np.random.default_rng(np.asarray(data, np.uint32).ravel().tolist())


def he_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> jax.Array:
    """float32 weights (out, in, *kernel) with variance 2 / fan_in, fan_in = in · prod(kernel),
    from a unit normal truncated at ±2 (redrawn) and rescaled.

    Drawn with numpy: eager jax.random compiles one XLA program per distinct shape, which made
    building the 21-conv network take tens of seconds on CPU."""
    z = rng.standard_normal(shape)
    while np.any(bad := np.abs(z) > 2.0):
        z[bad] = rng.standard_normal(int(bad.sum()))
    fan_in = int(np.prod(shape[1:]))
    return jnp.asarray(z * (np.sqrt(2.0 / fan_in) / TRUNCATED_STD), jnp.float32)


class FRN(eqx.Module):
    """Filter response normalisation with a thresholded linear unit, for one (C, H, W) map.

    y = max(gamma * x / sqrt(mean_hw(x²) + eps) + beta, tau), per channel; `gamma`, `beta`,
    `tau` are (C, 1, 1), initialised to 1, 0, 0.
    """

    gamma: jax.Array
    beta: jax.Array
    tau: jax.Array
    eps: float = eqx.field(static=True, default=FRN_EPS)

    def __init__(self, channels: int, eps: float = FRN_EPS):
        self.gamma = jnp.asarray(np.ones((channels, 1, 1), np.float32))
        self.beta = jnp.asarray(np.zeros((channels, 1, 1), np.float32))
        self.tau = jnp.asarray(np.zeros((channels, 1, 1), np.float32))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        """(C, H, W) -> (C, H, W)."""
        nu2 = jnp.mean(jnp.square(x), axis=(1, 2), keepdims=True)  # (C, 1, 1)
        y = self.gamma * x * jax.lax.rsqrt(nu2 + self.eps) + self.beta
        return jnp.maximum(y, self.tau)


def _conv(
    in_channels: int, out_channels: int, kernel: int, stride: int, rng: np.random.Generator
) -> eqx.nn.Conv2d:
    """A biased conv with TF-style SAME padding, He-normal weights and zero bias."""
    # shapes only (no compile): equinox's own random init is replaced right away
    conv = eqx.filter_eval_shape(
        eqx.nn.Conv2d,
        in_channels,
        out_channels,
        kernel,
        stride=stride,
        padding="SAME",
        key=jax.random.key(0),
    )
    weight = he_normal(rng, conv.weight.shape)  # (out, in, k, k)
    bias = jnp.asarray(np.zeros(conv.bias.shape, np.float32))  # (out, 1, 1)
    return eqx.tree_at(lambda c: (c.weight, c.bias), conv, (weight, bias))


class ResBlock(eqx.Module):
    """conv1 → FRN → act → conv2 → FRN, plus the shortcut (identity, or a strided 1×1 conv →
    FRN when the shape changes), then act of the sum. Maps (C_in, H, W) -> (C_out, H', W')."""

    conv1: eqx.nn.Conv2d
    norm1: FRN
    conv2: eqx.nn.Conv2d
    norm2: FRN
    shortcut_conv: eqx.nn.Conv2d | None
    shortcut_norm: FRN | None
    activation: Callable[[jax.Array], jax.Array] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        rng: np.random.Generator,
        activation: Callable[[jax.Array], jax.Array],
    ):
        self.conv1 = _conv(in_channels, out_channels, KERNEL_SIZE, stride, rng)
        self.norm1 = FRN(out_channels)
        self.conv2 = _conv(out_channels, out_channels, KERNEL_SIZE, 1, rng)
        self.norm2 = FRN(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut_conv = _conv(in_channels, out_channels, 1, stride, rng)
            self.shortcut_norm = FRN(out_channels)
        else:
            self.shortcut_conv = None
            self.shortcut_norm = None
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        """(C_in, H, W) -> (C_out, H', W')."""
        y = self.activation(self.norm1(conv2d(self.conv1, x)))
        y = self.norm2(conv2d(self.conv2, y))
        if self.shortcut_conv is not None and self.shortcut_norm is not None:
            x = self.shortcut_norm(conv2d(self.shortcut_conv, x))
        return self.activation(x + y)


class ResNet20FRN(ConvStem):
    """ResNet-20-FRN mapping ONE channels-last image (H, W, C) to (n_classes,) logits.

    Parameters: the stem `conv1.weight` (w, C, 3, 3), `conv1.bias` (w, 1, 1), `norm1.gamma` /
    `.beta` / `.tau` (w, 1, 1); blocks `blocks.{0..8}.conv1.*`, `.norm1.*`, `.conv2.*`, `.norm2.*`
    and, for blocks 3 and 6, `.shortcut_conv.*` / `.shortcut_norm.*`; the head `fc.weight`
    (n_classes, 4w), `fc.bias`. Block i is in stage i // 3 with 2^(i//3)·w channels (w = 16).
    Select every conv with `by_path({eqx.nn.Conv2d: ...})` or a glob such as `"*conv*"`;
    `jax.vmap` for batches (n, H, W, C). `depth` = 6n + 2 gives n blocks per stage (ResNet-8,
    -14, -32, ...; the shortcut projections then sit in blocks n and 2n).
    """

    conv1: eqx.nn.Conv2d
    norm1: FRN
    blocks: tuple[ResBlock, ...]
    fc: eqx.nn.Linear
    in_channels: int = eqx.field(static=True)
    n_classes: int = eqx.field(static=True)
    image_size: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    activation: Callable[[jax.Array], jax.Array] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        *,
        image_size: int,
        key: jax.Array,
        width: int = WIDTH,
        depth: int = DEPTH,
        activation: Callable[[jax.Array], jax.Array] = jax.nn.swish,
    ):
        if in_channels < 1 or n_classes < 2 or width < 1:
            raise ValueError(
                f"ResNet20FRN needs in_channels >= 1, n_classes >= 2 and width >= 1; got "
                f"in_channels={in_channels}, n_classes={n_classes}, width={width}"
            )
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"ResNet20FRN depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...); got {depth}"
            )
        if image_size < MIN_IMAGE_SIZE:
            raise ValueError(
                f"ResNet20FRN needs image_size >= {MIN_IMAGE_SIZE} (so the last stage's FRN "
                f"normalises over at least 2×2 pixels); got image_size={image_size}"
            )
        if not callable(activation):
            raise ValueError(f"ResNet20FRN activation must be callable; got {activation!r}")
        rng = numpy_rng(key)
        self.conv1 = _conv(in_channels, width, KERNEL_SIZE, 1, rng)
        self.norm1 = FRN(width)
        blocks, channels = [], width
        for stage in range(N_STAGES):
            out = width * 2**stage
            for b in range((depth - 2) // 6):
                stride = 2 if stage > 0 and b == 0 else 1
                blocks.append(ResBlock(channels, out, stride, rng=rng, activation=activation))
                channels = out
        self.blocks = tuple(blocks)
        fc = eqx.filter_eval_shape(eqx.nn.Linear, channels, n_classes, key=jax.random.key(0))
        fc_bias = jnp.asarray(np.zeros(n_classes, np.float32))
        self.fc = eqx.tree_at(
            lambda f: (f.weight, f.bias), fc, (he_normal(rng, fc.weight.shape), fc_bias)
        )
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.image_size = image_size
        self.width = width
        self.depth = depth
        self.activation = activation

    @property
    def first_layer(self) -> FirstLayer:
        """The stem `conv1.weight`: 3×3 windows, stride 1, SAME (= 1 pixel) zero padding."""
        return FirstLayer("conv1.weight", "conv", KERNEL_SIZE, 1, KERNEL_SIZE // 2)

    def features(self, x: jax.Array) -> jax.Array:
        """(H, W, C) one example -> (4w,) globally average-pooled last-stage features."""
        self._check_input(x)
        h = jnp.transpose(x, (2, 0, 1))  # equinox convs are (C, H, W)
        h = self.activation(self.norm1(conv2d(self.conv1, h)))
        for block in self.blocks:
            h = block(h)
        # (4w, s, s) -> (4w,); on 32×32 inputs s = 8, the reference's AvgPool 8 VALID
        return jnp.mean(h, axis=(1, 2))

    def __call__(self, x: jax.Array) -> jax.Array:
        """(H, W, C) one channels-last example -> (n_classes,) logits."""
        return self.fc(self.features(x))


def resnet20_frn_cifar(key: jax.Array, **kwargs) -> ResNet20FRN:
    """ResNet-20-FRN for 32×32×3 CIFAR-10, 10 classes: 274,042 parameters."""
    return ResNet20FRN(3, 10, image_size=32, key=key, **kwargs)


def resnet20_frn_mnist(key: jax.Array, **kwargs) -> ResNet20FRN:
    """ResNet-20-FRN for 28×28×1 MNIST, 10 classes: 273,754 parameters."""
    return ResNet20FRN(1, 10, image_size=28, key=key, **kwargs)
