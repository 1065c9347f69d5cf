"""Batched bilinear affine warps with a zero border (scikit-image `warp(order=1)` semantics).

Output pixel (col, row) of image i samples its input at `a[i] @ (col, row) + t[i]`, bilinearly,
with zeros outside the image. When the batch uses few distinct maps (MNIST-C's shear, rotate,
scale and translate use at most four), each map becomes one sparse `(H*W, H*W)` interpolation
matrix applied to all its images at once; otherwise every pixel is gathered on its own.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["affine_warp"]


def _corners(rows: np.ndarray, cols: np.ndarray):
    """The 4 bilinear neighbours of float coordinates: [(row index, col index, weight)]."""
    r0, c0 = np.floor(rows), np.floor(cols)
    fr, fc = rows - r0, cols - c0
    return [
        (r0 + dr, c0 + dc, (fr if dr else 1 - fr) * (fc if dc else 1 - fc))
        for dr in (0, 1)
        for dc in (0, 1)
    ]


def _grid(a: np.ndarray, t: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Source (rows, cols) `(..., H, W)` for maps `a` `(..., 2, 2)`, `t` `(..., 2)`."""
    col, row = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    a, t = a[..., None, None], t[..., None, None]
    src_c = a[..., 0, 0, :, :] * col + a[..., 0, 1, :, :] * row + t[..., 0, :, :]
    src_r = a[..., 1, 0, :, :] * col + a[..., 1, 1, :, :] * row + t[..., 1, :, :]
    return src_r, src_c


def _matrix(a: np.ndarray, t: np.ndarray, h: int, w: int) -> sparse.csr_matrix:
    """One map as a sparse `(H*W, H*W)` matrix: output pixel <- input pixels."""
    rows, cols = _grid(a, t, h, w)
    out_index = np.arange(h * w).reshape(h, w)
    entries = []
    for r, c, wt in _corners(rows, cols):
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w) & (wt > 0)
        entries.append((out_index[inside], (r * w + c)[inside].astype(np.int64), wt[inside]))
    out_i, in_i, wt = (np.concatenate(e) for e in zip(*entries))
    return sparse.csr_matrix((wt, (out_i, in_i)), shape=(h * w, h * w))


def _by_matrix(x: np.ndarray, a: np.ndarray, t: np.ndarray, group: np.ndarray) -> np.ndarray:
    h, w, c = x.shape[1:]
    out = np.empty(x.shape, np.float32)
    for g in range(int(group.max()) + 1):
        idx = np.flatnonzero(group == g)
        first = idx[0]
        planes = np.moveaxis(x[idx], -1, 1).reshape(len(idx) * c, h * w)  # (m*C, H*W)
        warped = _matrix(a[first], t[first], h, w) @ planes.T  # (H*W, m*C)
        out[idx] = np.moveaxis(warped.T.reshape(len(idx), c, h, w), 1, -1)
    return out


def _by_pixel(x: np.ndarray, a: np.ndarray, t: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    rows, cols = _grid(a, t, h, w)  # (n, H, W)
    padded = np.zeros((n, h + 2, w + 2, c), np.float32)  # a ring of zeros = the outside
    padded[:, 1:-1, 1:-1] = x
    b = np.arange(n)[:, None, None]
    out = np.zeros(x.shape, np.float32)
    for r, col, wt in _corners(rows, cols):
        ri = np.clip(r, -1, h).astype(np.int64) + 1
        ci = np.clip(col, -1, w).astype(np.int64) + 1
        out += wt.astype(np.float32)[..., None] * padded[b, ri, ci]
    return out


def affine_warp(x: np.ndarray, a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Warp `x` `(n, H, W, C)` by inverse maps `a` `(n, 2, 2)`, `t` `(n, 2)` in
    (col, row) pixel coordinates; float32 clipped to [0, 1]."""
    n = len(x)
    a = np.broadcast_to(np.asarray(a, np.float64), (n, 2, 2))
    t = np.broadcast_to(np.asarray(t, np.float64), (n, 2))
    if n == 0:
        return np.zeros(x.shape, np.float32)
    keys = np.concatenate([a.reshape(n, 4), t], axis=1)
    _, group = np.unique(keys, axis=0, return_inverse=True)
    few = group.max() + 1 <= max(4, n // 64)
    out = _by_matrix(x, a, t, group.ravel()) if few else _by_pixel(x, a, t)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
