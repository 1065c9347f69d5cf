"""Streaming covariance of the k x k x C patches a convolution sees (never all patches at once)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bnn_shift.priors.base import check_finite_array


def extract_patches(
    images: np.ndarray, kernel_size: int, padding: int = 0, stride: int = 1
) -> np.ndarray:
    """(n, H, W, C) images -> (n * H' * W', C * k * k) patches, flattened in (C, kh, kw) order.

    The order matches an equinox conv kernel (out, in, kh, kw) reshaped to (out, in * kh * kw);
    padding is zeros, as in the convolution.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be shaped (n, H, W, C), got shape {images.shape}")
    if kernel_size < 1 or padding < 0 or stride < 1:
        raise ValueError(
            f"need kernel_size >= 1, padding >= 0, stride >= 1; got "
            f"{kernel_size}, {padding}, {stride}"
        )
    pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    padded = np.pad(images, pad) if padding else images
    if min(padded.shape[1:3]) < kernel_size:
        raise ValueError(
            f"images of size {images.shape[1:3]} with padding {padding} are smaller "
            f"than the {kernel_size}x{kernel_size} kernel"
        )
    windows = sliding_window_view(padded, (kernel_size, kernel_size), axis=(1, 2))
    windows = windows[:, ::stride, ::stride]  # (n, H', W', C, k, k)
    return windows.reshape(-1, images.shape[3] * kernel_size * kernel_size)


def patch_covariance(
    images: np.ndarray,
    kernel_size: int,
    padding: int = 0,
    stride: int = 1,
    chunk_images: int = 256,
) -> np.ndarray:
    """(n, H, W, C) -> (C*k*k, C*k*k) float64 covariance of all patches, /(N-1), in chunks.

    Sums are accumulated around the first chunk's mean, so float64 keeps its precision when the
    patch mean is large relative to the spread.
    """
    images = np.asarray(images)
    check_finite_array("patch covariance input images", images)
    shift = None
    count, total, outer = 0, None, None
    for start in range(0, len(images), chunk_images):
        patches = extract_patches(
            images[start : start + chunk_images].astype(np.float64), kernel_size, padding, stride
        )
        if shift is None:
            shift = patches.mean(axis=0)
            total = np.zeros_like(shift)
            outer = np.zeros((len(shift), len(shift)))
        centred = patches - shift
        count += len(centred)
        total += centred.sum(axis=0)
        outer += centred.T @ centred
    if count < 2:
        raise ValueError(f"need at least 2 patches to estimate a covariance, got {count}")
    mean = total / count
    return (outer - count * np.outer(mean, mean)) / (count - 1)
