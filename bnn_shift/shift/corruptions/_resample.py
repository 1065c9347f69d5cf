"""Batched resampling for the corruptions: bilinear sampling, affine maps, zooms, box resizes.

Every function acts on a whole batch `(n, H, W, C)` at once. The border modes follow
`scipy.ndimage` names: `"reflect"` repeats the edge pixel (d c b a | a b c d),
`"mirror"` does not (d c b | a b c d; OpenCV's `BORDER_REFLECT_101`) and `"nearest"`
clamps (a a a | a b c d; OpenCV's `BORDER_REPLICATE`).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image

__all__ = [
    "affine_from_points",
    "apply_separable",
    "apply_taps",
    "box_resize_matrix",
    "clipped_zoom_taps",
    "sample_bilinear",
]

_MODES = ("reflect", "mirror", "nearest")


def _fold(index: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Map integer indices outside `[0, size)` back inside by the border `mode`."""
    if mode == "nearest" or size == 1:
        return np.clip(index, 0, size - 1)
    if mode == "reflect":
        period = 2 * size
        i = np.mod(index, period)
        return np.where(i >= size, period - 1 - i, i)
    period = 2 * (size - 1)  # mirror
    i = np.mod(index, period)
    return np.where(i >= size, period - i, i)


def _folded_neighbours(index: np.ndarray, size: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """`_fold(index)` and `_fold(index + 1)` through a small lookup table."""
    lo = int(index.min())
    table = _fold(np.arange(lo, int(index.max()) + 2), size, mode)
    k = index - lo
    return table[k], table[k + 1]


def sample_bilinear(
    x: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str = "reflect"
) -> np.ndarray:
    """Bilinear samples of each image of `x` `(n, H, W, C)` at its own float coordinates.

    `rows`, `cols` `(n, h, w)` are pixel coordinates (pixel centres at integers), the
    same convention as `scipy.ndimage.map_coordinates(..., order=1, mode=mode)` applied to
    each image. Returns `(n, h, w, C)` in the dtype of `x`.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}; got {mode!r}")
    n, height, width, channels = x.shape
    r0, c0 = np.floor(rows), np.floor(cols)
    fr = (rows - r0).astype(x.dtype)[..., None]  # (n, h, w, 1)
    fc = (cols - c0).astype(x.dtype)[..., None]
    ra, rb = _folded_neighbours(r0.astype(np.int64), height, mode)
    ca, cb = _folded_neighbours(c0.astype(np.int64), width, mode)
    base = height * np.arange(n).reshape(n, 1, 1)
    ra, rb = (ra + base) * width, (rb + base) * width  # flat offsets of the rows
    flat = np.ascontiguousarray(x).reshape(-1, channels)  # (n * H * W, C)
    top = flat[ra + ca]
    top += (flat[ra + cb] - top) * fc
    bottom = flat[rb + ca]
    bottom += (flat[rb + cb] - bottom) * fc
    return top + (bottom - top) * fr


def affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The affine maps `(n, 2, 3)` taking the three points `src` to `dst` `(n, 3, 2)`.

    Same result as OpenCV's `getAffineTransform` per image: `dst = M @ [x, y, 1]`.
    """
    ones = np.ones((*src.shape[:-1], 1), dtype=np.float64)
    design = np.concatenate([np.asarray(src, np.float64), ones], axis=-1)  # (n, 3, 3)
    solution = np.linalg.solve(design, np.asarray(dst, np.float64))  # (n, 3, 2)
    return np.swapaxes(solution, -1, -2)


def _zoom_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`scipy.ndimage.zoom(order=1)` along one axis: output `i` is `(1 - f) in[lo] + f
    in[hi]` at input coordinate `i (n_in - 1) / (n_out - 1)` (corner pixels aligned)."""
    coords = np.zeros(n_out) if n_out == 1 else np.arange(n_out) * (n_in - 1) / (n_out - 1)
    lo = np.minimum(np.floor(coords).astype(np.int64), n_in - 1)
    return lo, np.minimum(lo + 1, n_in - 1), coords - lo


@functools.lru_cache(maxsize=256)
def clipped_zoom_taps(size: int, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The benchmark's centre crop-and-zoom along one axis of length `size`.

    Crops the central `ceil(size / factor)` pixels, zooms them by `factor` as
    `scipy.ndimage.zoom(order=1)` does (output length `round(crop * factor)`) and keeps
    the central `size` pixels. Returns `(lo, hi, frac)`, each `(size,)`: output pixel
    `i` is `(1 - frac[i]) x[lo[i]] + frac[i] x[hi[i]]` (see `apply_taps`).
    """
    crop = math.ceil(size / factor)
    top = (size - crop) // 2
    n_out = round(crop * factor)
    lo, hi, frac = _zoom_taps(crop, n_out)
    trim = slice((n_out - size) // 2, (n_out - size) // 2 + size)
    return lo[trim] + top, hi[trim] + top, frac[trim]


def apply_taps(
    x: np.ndarray, axis: int, taps: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> np.ndarray:
    """Two-tap linear resampling of `x` along `axis` (`taps` as from
    `clipped_zoom_taps`)."""
    lo, hi, frac = taps
    shape = [1] * x.ndim
    shape[axis] = -1
    a = np.take(x, lo, axis=axis)
    b = np.take(x, hi, axis=axis)
    return a + (b - a) * frac.astype(x.dtype).reshape(shape)


@functools.lru_cache(maxsize=256)
def box_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Pillow's `BOX` resize along one axis as a matrix `(n_out, n_in)`.

    Taken from Pillow itself (a float image of the identity), so the weights are exactly
    Pillow's, without its 8-bit rounding.
    """
    eye = np.eye(n_in, dtype=np.float32)
    resized = Image.fromarray(eye).resize((n_out, n_in), Image.Resampling.BOX)
    matrix = np.asarray(resized, dtype=np.float64).T.copy()
    matrix.setflags(write=False)
    return matrix


def apply_separable(x: np.ndarray, row_matrix: np.ndarray, col_matrix: np.ndarray) -> np.ndarray:
    """`out[n, i, j, c] = sum_hw row[i, h] col[j, w] x[n, h, w, c]`: one linear map per axis.

    `x` `(n, H, W, C)`, `row_matrix` `(h, H)`, `col_matrix` `(w, W)`
    -> `(n, h, w, C)`.
    """
    n, height, width, c = x.shape
    rows = np.asarray(row_matrix, dtype=x.dtype)
    cols = np.asarray(col_matrix, dtype=x.dtype)
    y = np.matmul(rows, x.reshape(n, height, width * c))  # (n, h, W*C)
    y = np.tensordot(y.reshape(n, -1, width, c), cols, axes=([2], [1]))  # (n, h, C, w)
    return np.ascontiguousarray(np.moveaxis(y, 3, 2))
