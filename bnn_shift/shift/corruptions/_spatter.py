"""CIFAR-10-C spatter (water and mud) and the OpenCV 8-bit image operations it is built from.

The original generator uses OpenCV (Canny, the 5x5 chamfer distance transform, box blur,
histogram equalisation, an emboss filter). Here each is a batched numpy/scipy port with
OpenCV's semantics and integer arithmetic on 8-bit images, checked against OpenCV itself.
The 8-bit cast of the liquid layer wraps around as the release's did (`release_uint8_cast`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from bnn_shift.shift.corruptions._ops import gaussian_blur

__all__ = ["chamfer_distance", "equalize_hist", "opencv_canny", "release_uint8_cast", "spatter"]

_WATER_RGB = np.array([175, 238, 238], np.float32) / 255  # pale turquoise
_MUD_RGB = np.array([63, 42, 20], np.float32) / 255  # brown
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # OpenCV's RGB -> gray weights
_TAN_22_5 = 13573  # round(tan(22.5 deg) * 2**15), OpenCV's fixed-point constant
_EMBOSS = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.int64)
# OpenCV's DIST_L2 5x5 chamfer steps, float32 as OpenCV adds them
_STEP, _DIAG, _KNIGHT = np.float32(1.0), np.float32(1.4), np.float32(2.1969)
_FAR = np.float32(1e30)  # "no path yet"
_ABOVE = (  # (row offset, column offset, step) of the mask's cells above the current row
    (-2, -1, _KNIGHT),
    (-2, 1, _KNIGHT),
    (-1, -2, _KNIGHT),
    (-1, -1, _DIAG),
    (-1, 0, _STEP),
    (-1, 1, _DIAG),
    (-1, 2, _KNIGHT),
)


def _shift(a: np.ndarray, dr: int, dc: int, mode: str) -> np.ndarray:
    """`out[:, i, j] = a[:, i + dr, j + dc]` for `a` `(n, H, W)`, padded by `mode`."""
    pad = np.pad(a, ((0, 0), (1, 1), (1, 1)), mode=mode)
    h, w = a.shape[1:]
    return pad[:, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]


def opencv_canny(image: np.ndarray, low: int, high: int) -> np.ndarray:
    """OpenCV's `Canny(image, low, high)` (3x3 Sobel, L1 magnitude) on `(n, H, W)` uint8.

    Returns a bool edge map `(n, H, W)`: non-maximum suppression along the gradient
    direction quantised to 0/45/90/135 degrees (OpenCV's tie rules), then hysteresis: weak
    pixels (magnitude > low) are kept when 8-connected to a strong one (> high).
    """
    img = image.astype(np.int64)
    s = lambda dr, dc: _shift(img, dr, dc, "edge")
    dx = (s(-1, 1) - s(-1, -1)) + 2 * (s(0, 1) - s(0, -1)) + (s(1, 1) - s(1, -1))
    dy = (s(1, -1) - s(-1, -1)) + 2 * (s(1, 0) - s(-1, 0)) + (s(1, 1) - s(-1, 1))
    mag = np.abs(dx) + np.abs(dy)  # (n, H, W)
    m = lambda dr, dc: _shift(mag, dr, dc, "constant")  # zero magnitude outside the image
    ax, ay = np.abs(dx), np.abs(dy) << 15
    tg22 = ax * _TAN_22_5
    tg67 = tg22 + (ax << 16)
    horizontal = ay < tg22
    vertical = ~horizontal & (ay > tg67)
    diagonal = ~horizontal & ~vertical
    sign_neg = (dx ^ dy) < 0  # s = -1: compare up-right with down-left
    peak_h = (mag > m(0, -1)) & (mag >= m(0, 1))
    peak_v = (mag > m(-1, 0)) & (mag >= m(1, 0))
    peak_d = np.where(
        sign_neg,
        (mag > m(-1, 1)) & (mag > m(1, -1)),
        (mag > m(-1, -1)) & (mag > m(1, 1)),
    )
    peak = (horizontal & peak_h) | (vertical & peak_v) | (diagonal & peak_d)
    candidate = peak & (mag > low)
    strong = candidate & (mag > high)
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True  # 8-connectivity within each image, none across the batch
    labels, count = ndimage.label(candidate, structure=structure)
    keep = np.zeros(count + 1, bool)
    keep[labels[strong]] = True
    keep[0] = False
    return keep[labels]


def equalize_hist(image: np.ndarray) -> np.ndarray:
    """OpenCV's `equalizeHist` on each 8-bit image of `(n, H, W)` uint8."""
    n = image.shape[0]
    flat = image.reshape(n, -1).astype(np.int64)
    total = flat.shape[1]
    hist = np.bincount((flat + 256 * np.arange(n)[:, None]).ravel(), minlength=256 * n)
    hist = hist.reshape(n, 256)
    first = np.argmax(hist > 0, axis=1)  # (n,) lowest level present
    first_count = hist[np.arange(n), first]
    cum = np.cumsum(hist, axis=1) - first_count[:, None]  # counts above the lowest level
    scale = 255.0 / np.maximum(total - first_count, 1)[:, None]
    lut = np.clip(np.rint(cum * scale), 0, 255)
    lut[np.arange(256)[None, :] <= first[:, None]] = 0
    constant = first_count == total  # OpenCV leaves a one-level image at that level
    lut[constant] = first[constant, None]
    return np.take_along_axis(lut, flat, axis=1).reshape(image.shape).astype(np.uint8)


def _chamfer_pass(d: np.ndarray) -> np.ndarray:
    """One top-to-bottom, left-to-right pass of OpenCV's 5x5 chamfer on `(n, H, W)` float32.

    The rows above enter a whole row at a time; the pixel to the left is a sequential
    dependency, so columns are visited in order (each step acts on the whole batch).
    """
    n, h, w = d.shape
    pad = np.full((n, h + 2, w + 4), _FAR, np.float32)
    pad[:, 2:, 2:-2] = d
    for i in range(2, h + 2):
        best = pad[:, i, 2:-2]
        for dr, dc, cost in _ABOVE:
            best = np.minimum(best, pad[:, i + dr, 2 + dc : 2 + dc + w] + cost)
        row = pad[:, i]
        row[:, 2:-2] = best
        for j in range(3, w + 2):
            np.minimum(row[:, j], row[:, j - 1] + _STEP, out=row[:, j])
    return pad[:, 2:, 2:-2]


def chamfer_distance(edges: np.ndarray) -> np.ndarray:
    """OpenCV's `distanceTransform(255 - edges, DIST_L2, 5)` for bool `edges` `(n, H, W)`.

    Distance (float32, pixels) from each pixel to the nearest edge pixel of its own image along
    OpenCV's 5x5 chamfer steps (1, 1.4, 2.1969), with OpenCV's forward and backward passes in
    float32. Images without edges get distances far above 20.
    """
    d = np.where(edges, np.float32(0), _FAR).astype(np.float32)
    d = _chamfer_pass(d)
    return _chamfer_pass(d[:, ::-1, ::-1])[:, ::-1, ::-1]


def _box3(a: np.ndarray) -> np.ndarray:
    """OpenCV's `blur(a, (3, 3))`: 3x3 mean, border reflected without the edge pixel."""
    return ndimage.uniform_filter(a, size=(1, 3, 3), mode="mirror")


def _water_mask(liquid: np.ndarray) -> np.ndarray:
    """The embossed water-drop intensity `(n, H, W)` in [0, 1] from the liquid layer."""
    liquid8 = release_uint8_cast(liquid)
    edges = opencv_canny(liquid8, 50, 150)
    n = liquid.shape[0]
    dist = np.minimum(chamfer_distance(edges), np.float32(20.0))
    dist = _box3(dist).astype(np.uint8)
    dist = equalize_hist(dist).astype(np.int64)
    embossed = sum(
        _EMBOSS[i, j] * _shift(dist, i - 1, j - 1, "reflect")
        for i in range(3)
        for j in range(3)
        if _EMBOSS[i, j]
    )
    embossed = np.clip(embossed, 0, 255).astype(np.float64)
    dist = np.rint(_box3(embossed))  # OpenCV's 8-bit blur rounds
    m = liquid8.astype(np.float64) * dist  # (n, H, W)
    peak = m.reshape(n, -1).max(axis=1)[:, None, None]
    return np.where(peak > 0, m / np.where(peak > 0, peak, 1.0), 0.0).astype(np.float32)


def release_uint8_cast(liquid: np.ndarray) -> np.ndarray:
    """The generator's `(liquid * 255).astype(np.uint8)` for a liquid layer >= 0.

    Truncated, and values above 1 wrap around modulo 256 (what numpy's float -> uint8 cast
    did on x86 at the time of the release): a drop at 1.2 becomes level 50, a dark hole in
    a bright drop (about 1 % of the pixels at severity 3, the only level whose layer exceeds
    1). Kept on purpose: the released CIFAR-10-C was made that way.
    """
    return (np.trunc(np.asarray(liquid, np.float64) * 255).astype(np.int64) & 0xFF).astype(np.uint8)


def _colour(rgb: np.ndarray, channels: int) -> np.ndarray:
    """`rgb` for colour images, its luminance for grayscale ones."""
    return rgb if channels == 3 else np.array([rgb @ _LUMA], np.float32)


def spatter(
    x: np.ndarray,
    loc: float,
    scale: float,
    sigma: float,
    threshold: float,
    intensity: float,
    mode: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """CIFAR-10-C spatter on `(n, H, W, C)`, `C` in {1, 3}: water drops (`mode` 0) or mud
    splashes (`mode` 1).

    A liquid layer `N(loc, scale)` per pixel is blurred (`sigma`) and cut below
    `threshold`. Water: the layer's Canny edges -> distance to the nearest edge (capped at
    20) -> box blur -> histogram equalisation -> emboss -> box blur, times the layer, scaled to
    peak `intensity` and added in pale turquoise. Mud: the mask `layer > threshold`
    blurred with sigma `intensity`, kept where >= 0.8, replaces the image with brown.
    On grayscale images the colours are their luminance.
    """
    n, h, w, c = x.shape
    layer = rng.normal(loc, scale, size=(n, h, w))
    # float64 as skimage's `gaussian` blurs it (its 8-bit cast below truncates)
    layer = ndimage.gaussian_filter(layer, (0, sigma, sigma), mode="nearest")  # (n, H, W)
    layer[layer < threshold] = 0
    if mode == 0:
        m = _water_mask(layer)[..., None] * np.float32(intensity)  # (n, H, W, 1)
        out = x + m * _colour(_WATER_RGB, c)
    else:
        mask = (layer > threshold).astype(np.float32)[..., None]
        m = gaussian_blur(mask, intensity)
        m[m < 0.8] = 0
        out = x * (1 - m) + m * _colour(_MUD_RGB, c)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
