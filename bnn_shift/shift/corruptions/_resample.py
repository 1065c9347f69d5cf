"""Batched resampling for the corruptions: bilinear sampling, affine maps, zooms, box resizes.

Every function acts on a whole batch `(n, H, W, C)` at once. The border modes follow
`scipy.ndimage` names: `"reflect"` repeats the edge pixel (d c b a | a b c d),
`"mirror"` does not (d c b | a b c d; OpenCV's `BORDER_REFLECT_101`) and `"nearest"`
clamps (a a a | a b c d; OpenCV's `BORDER_REPLICATE`). Two functions reproduce the libraries
of the CIFAR-10-C release bit for bit instead: `opencv_warp_affine` (OpenCV's fixed-point
`warpAffine`) and `map_coordinates_pre16_reflect` (SciPy < 1.6's `map_coordinates(order=1,
mode="reflect")`).
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
    "map_coordinates_pre16_reflect",
    "opencv_warp_affine",
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


# OpenCV's warpAffine: the map is evaluated in 1/1024 px (AB_BITS = 10), then rounded to the
# 1/32 px grid (INTER_BITS = 5) whose bilinear weights (k/32 products) are tabulated
_AB_SCALE = 1 << 10
_INTER_BITS = 5
_INTER_TAB = 1 << _INTER_BITS


def _opencv_inverse(forward: np.ndarray) -> np.ndarray:
    """`warpAffine`'s inversion of forward maps `(n, 2, 3)`, OpenCV's formula in float64."""
    m = np.asarray(forward, np.float64)
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    det = a * e - b * d
    inv_det = np.where(det != 0, 1.0 / np.where(det != 0, det, 1.0), 0.0)
    a11, a22 = e * inv_det, a * inv_det
    a12, a21 = b * -inv_det, d * -inv_det
    b1 = -a11 * c - a12 * f
    b2 = -a21 * c - a22 * f
    return np.stack([np.stack([a11, a12, b1], -1), np.stack([a21, a22, b2], -1)], 1)


def opencv_warp_affine(x: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """OpenCV's `warpAffine(img, M, (W, H), borderMode=BORDER_REFLECT_101)` (INTER_LINEAR)
    of each float image of `x` `(n, H, W, C)` by its forward map `forward` `(n, 2, 3)`.

    As OpenCV computes it: the map is inverted, each output pixel's source coordinates are
    rounded to 1/1024 px and then to the nearest 1/32 px, and the 4 neighbours are weighted
    by products of multiples of 1/32 and summed in float32 (neighbours outside the image
    mirrored without the edge pixel). Returns float32 `(n, H, W, C)`.
    """
    n, h, w, _ = x.shape
    inv = _opencv_inverse(forward)
    cols, rows = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    half_step = _AB_SCALE // _INTER_TAB // 2
    shift = int(math.log2(_AB_SCALE)) - _INTER_BITS

    def fixed(k: int) -> np.ndarray:  # source coordinate k (0: col, 1: row) in 1/32 px
        across = np.rint(inv[:, k, 0, None] * cols * _AB_SCALE).astype(np.int64)  # (n, W)
        down = np.rint((inv[:, k, 1, None] * rows + inv[:, k, 2, None]) * _AB_SCALE)
        down = down.astype(np.int64) + half_step  # (n, H)
        return (down[:, :, None] + across[:, None, :]) >> shift  # (n, H, W)

    fx, fy = fixed(0), fixed(1)
    c0, r0 = fx >> _INTER_BITS, fy >> _INTER_BITS
    table = np.arange(_INTER_TAB, dtype=np.float32) / np.float32(_INTER_TAB)
    ux = table[fx & (_INTER_TAB - 1)][..., None]  # (n, H, W, 1) exact k / 32
    uy = table[fy & (_INTER_TAB - 1)][..., None]
    one = np.float32(1.0)
    ca, cb = _fold(c0, w, "mirror"), _fold(c0 + 1, w, "mirror")
    ra, rb = _fold(r0, h, "mirror"), _fold(r0 + 1, h, "mirror")
    b = np.arange(n)[:, None, None]
    img = np.asarray(x, np.float32)
    out = img[b, ra, ca] * ((one - uy) * (one - ux))
    out += img[b, ra, cb] * ((one - uy) * ux)
    out += img[b, rb, ca] * (uy * (one - ux))
    out += img[b, rb, cb] * (uy * ux)
    return out


def _pre16_reflect(coord: np.ndarray, size: int) -> np.ndarray:
    """SciPy < 1.6's `map_coordinate(in, len, NI_EXTEND_REFLECT)`: a coordinate below 0
    becomes `-in - 1`, one at or above `len` becomes `2 len - in - 1` (after reducing by
    `2 len`); one in `(len - 1, len)` is left as it is."""
    if size <= 1:
        return np.zeros_like(coord)
    period = 2.0 * size
    out = np.array(coord, np.float64)
    low = out < 0
    t = out[low]
    t = np.where(t < -period, period * np.trunc(-t / period) + t, t)
    out[low] = np.where(t < -size, t + period, -t - 1)
    high = out > size - 1
    u = out[high]
    u = u - period * np.trunc(u / period)
    out[high] = np.where(u >= size, period - u - 1, u)
    return out


def map_coordinates_pre16_reflect(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """SciPy < 1.6's `map_coordinates(img, [rows, cols, channel], order=1, mode="reflect")`
    for each image of `x` `(n, H, W, C)` at its own coordinates `rows`, `cols` `(n, H, W)`.

    Before SciPy 1.6 (gh-12767 rewrote the boundary handling) "reflect" was not the
    half-sample reflection it is now. The coordinate was first reflected (`_pre16_reflect`),
    then interpolated between neighbours mirrored *without* the edge pixel (today's
    "mirror"), and a result at or below -1 gave the constant 0. So a coordinate `-0.3`
    reads `0.7 x[1] + 0.3 x[0]` (today's "reflect": `x[0]`; "mirror": `0.3 x[1] + 0.7
    x[0]`) and `W - 0.5` reads `(x[W-1] + x[W-2]) / 2`. The sum is taken in float64 in
    SciPy's order; the result is float32, as SciPy returns it for a float32 image.
    """
    n, h, w, _ = x.shape
    rr, cc = _pre16_reflect(rows, h), _pre16_reflect(cols, w)
    weights = []
    for coord, size in ((rr, h), (cc, w)):
        start = np.floor(coord)
        d = start - coord  # scipy's spline_coefficients: y = |start - x + k|, w = 1 - y
        i0 = np.clip(start, -1, size).astype(np.int64)  # -1 when -1 < coordinate < 0
        lo, hi = _fold(i0, size, "mirror"), _fold(i0 + 1, size, "mirror")
        weights.append((1.0 - np.abs(d), 1.0 - np.abs(d + 1.0), lo, hi))
    (wr0, wr1, ra, rb), (wc0, wc1, ca, cb) = weights
    b = np.arange(n)[:, None, None]
    img = np.asarray(x)
    t = img[b, ra, ca].astype(np.float64) * wr0[..., None] * wc0[..., None]
    t += img[b, ra, cb].astype(np.float64) * wr0[..., None] * wc1[..., None]
    t += img[b, rb, ca].astype(np.float64) * wr1[..., None] * wc0[..., None]
    t += img[b, rb, cb].astype(np.float64) * wr1[..., None] * wc1[..., None]
    t[(rr <= -1.0) | (cc <= -1.0)] = 0.0  # outside after reflecting: the constant cval
    return t.astype(np.float32)


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
