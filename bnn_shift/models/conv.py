"""One 2-D convolution for every conv model: XLA's native conv, or patches and one matmul.

XLA:CPU runs a convolution inside a compiled loop (the HMC leapfrog `fori_loop`, a `scan`)
about 5× slower than outside one; cutting the patches out with strided slices and multiplying
them by the flattened kernel (im2col) does not slow down there. `conv2d(layer, x)` applies an
`eqx.nn.Conv2d`'s own `weight`/`bias` (so parameter paths and leaf order do not change) along
the path `conv_path()` picks: "matmul" on CPU, "native" on GPU/TPU. Set the environment variable
`BNN_SHIFT_CONV_PATH` to "native" or "matmul" to force one; it is read when a function is
traced, so set it before the first call of a jitted program (a cached program keeps its path;
`jax.clear_caches()` after changing it). Outside loops the native conv is as fast or faster.
"""

from __future__ import annotations

import os

import equinox as eqx
import jax
import jax.numpy as jnp

CONV_PATH_ENV = "BNN_SHIFT_CONV_PATH"
CONV_PATHS = ("native", "matmul")


def conv_path(backend: str | None = None) -> str:
    """The conv path, "native" or "matmul": `$BNN_SHIFT_CONV_PATH` if set, else "matmul" on the
    "cpu" backend and "native" on any other (`backend` defaults to `jax.default_backend()`)."""
    forced = os.environ.get(CONV_PATH_ENV, "")
    if forced:
        if forced not in CONV_PATHS:
            raise ValueError(f"{CONV_PATH_ENV}={forced!r}; choose from {CONV_PATHS}")
        return forced
    backend = jax.default_backend() if backend is None else backend
    return "matmul" if backend == "cpu" else "native"


def _matmul_supported(layer: eqx.nn.Conv2d) -> bool:
    return layer.groups == 1 and layer.dilation == (1, 1) and layer.padding_mode == "ZEROS"


def zero_padding(layer: eqx.nn.Conv2d, spatial: tuple[int, int]) -> list[tuple[int, int]]:
    """The layer's zero padding as ((top, bottom), (left, right)), resolving "SAME"/"VALID"."""
    if isinstance(layer.padding, str):
        return jax.lax.padtype_to_pads(spatial, layer.kernel_size, layer.stride, layer.padding)
    return [tuple(p) for p in layer.padding]


def conv2d_matmul(layer: eqx.nn.Conv2d, x: jax.Array) -> jax.Array:
    """(C, H, W) -> (O, H', W'): `layer(x)` as im2col, one (H' W', kh kw C) @ (kh kw C, O) matmul.

    Non-overlapping windows (stride == kernel size, a patch embedding) are a reshape; otherwise
    the patches are kh·kw strided slices of the channels-last input. Only groups=1, dilation 1
    and zero padding.
    """
    if not _matmul_supported(layer):
        raise ValueError("the matmul conv path needs groups=1, dilation 1 and padding_mode ZEROS")
    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    x = jnp.pad(x, [(0, 0), *zero_padding(layer, x.shape[1:])])  # (C, Hp, Wp)
    c, hp, wp = x.shape
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    if (kh, kw) == (sh, sw):
        x = x[:, : ho * kh, : wo * kw].reshape(c, ho, kh, wo, kw)
        patches = x.transpose(1, 3, 0, 2, 4)  # (H', W', C, kh, kw)
        weight = layer.weight  # (O, C, kh, kw)
    else:
        x = x.transpose(1, 2, 0)  # (Hp, Wp, C)
        windows = [
            x[i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]  # (H', W', C)
            for i in range(kh)
            for j in range(kw)
        ]
        patches = jnp.stack(windows, axis=2)  # (H', W', kh kw, C)
        weight = layer.weight.transpose(0, 2, 3, 1)  # (O, kh, kw, C)
    weight = weight.reshape(weight.shape[0], -1)  # (O, K)
    y = patches.reshape(ho * wo, -1) @ weight.T  # (H' W', O)
    y = y.T.reshape(-1, ho, wo)
    return y if layer.bias is None else y + layer.bias


def conv2d(layer: eqx.nn.Conv2d, x: jax.Array, *, path: str | None = None) -> jax.Array:
    """(C, H, W) -> (O, H', W'): `layer(x)` along `path` (default `conv_path()`); layers the
    matmul path does not cover (groups, dilation, non-zero padding modes) run natively."""
    if not isinstance(layer, eqx.nn.Conv2d):  # a stand-in (e.g. a Laplace KFAC tap): call it
        return layer(x)
    path = conv_path() if path is None else path
    if path not in CONV_PATHS:
        raise ValueError(f"unknown conv path {path!r}; choose from {CONV_PATHS}")
    if path == "matmul" and _matmul_supported(layer):
        return conv2d_matmul(layer, x)
    return layer(x)
