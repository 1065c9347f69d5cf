"""Moving digit images between scikit-learn's 8x8 format and MNIST's 28x28 format.

MNIST digits are size-normalised into a 20x20 box and placed in a 28x28 field with their centre
of mass at the centre. scikit-learn's digits are 8x8 counts (0..16) of "on" pixels in 4x4 blocks
of a 32x32 bitmap the digit fills. Both functions take and return pixel values in [0, 1].
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MNIST_SIZE, MNIST_BOX, DIGITS_SIZE = 28, 20, 8


def _check(images: np.ndarray, size: int, name: str) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (size, size):
        raise ValueError(f"{name} expects (n, {size}, {size}[, 1]) images, got {x.shape}")
    if x.size and (x.min() < -1e-6 or x.max() > 1 + 1e-6):
        raise ValueError(f"{name} expects pixel values in [0, 1]; scale (e.g. digits / 16) first")
    return x


def upsample_digits(images: np.ndarray) -> np.ndarray:
    """8x8 digits (n, 8, 8) in [0, 1] -> MNIST-like (n, 28, 28) float32 in [0, 1].

    Each image is resized bilinearly to 20x20 (pixel areas aligned) and placed in a 28x28 field
    so that its centre of mass lands on the centre pixel (13.5, 13.5), rounded, as MNIST does.
    """
    x = _check(images, DIGITS_SIZE, "upsample_digits")
    zoom = MNIST_BOX / DIGITS_SIZE
    box = ndimage.zoom(x, (1, zoom, zoom), order=1, mode="grid-constant", grid_mode=True)
    box = np.clip(box, 0.0, 1.0)  # (n, 20, 20)
    out = np.zeros((len(x), MNIST_SIZE, MNIST_SIZE), np.float32)
    grid = np.arange(MNIST_BOX, dtype=np.float64)
    mass = box.sum(axis=(1, 2), dtype=np.float64)  # (n,)
    safe = np.where(mass > 0, mass, 1.0)
    centre = (MNIST_SIZE - 1) / 2
    rows = np.where(mass > 0, (box.sum(2) @ grid) / safe, (MNIST_BOX - 1) / 2)  # (n,)
    cols = np.where(mass > 0, (box.sum(1) @ grid) / safe, (MNIST_BOX - 1) / 2)  # (n,)
    top = np.clip(np.rint(centre - rows), 0, MNIST_SIZE - MNIST_BOX).astype(int)
    left = np.clip(np.rint(centre - cols), 0, MNIST_SIZE - MNIST_BOX).astype(int)
    for i, (t, lft) in enumerate(zip(top, left, strict=True)):
        out[i, t : t + MNIST_BOX, lft : lft + MNIST_BOX] = box[i]
    return out


def downsample_to_digits(images: np.ndarray, quantize: bool = True) -> np.ndarray:
    """MNIST images (n, 28, 28) in [0, 1] -> digits-like (n, 8, 8) float32 in [0, 1].

    The central 20x20 box is averaged over exact pixel areas (each output pixel covers 2.5x2.5
    input pixels); with `quantize` the result is rounded to sixteenths like scikit-learn's
    0..16 counts.
    """
    x = _check(images, MNIST_SIZE, "downsample_to_digits")
    lo = (MNIST_SIZE - MNIST_BOX) // 2
    box = x[:, lo : lo + MNIST_BOX, lo : lo + MNIST_BOX]  # (n, 20, 20)
    fine = box.repeat(2, axis=1).repeat(2, axis=2)  # (n, 40, 40): 40 = 8 * 5
    out = fine.reshape(len(x), DIGITS_SIZE, 5, DIGITS_SIZE, 5).mean(axis=(2, 4))
    if quantize:
        out = np.rint(out * 16) / 16
    return out.astype(np.float32)
