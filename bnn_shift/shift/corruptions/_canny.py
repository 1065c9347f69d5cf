"""Batched Canny edge detector with scikit-image's algorithm (`skimage.feature.canny`).

MNIST-C's `canny_edges` calls `skimage.feature.canny(x)` with its defaults; this is the same
algorithm written for a stack of images at once: Gaussian smoothing (zero border, renormalised
by the smoothed all-ones mask), Sobel gradients, non-maximum suppression with interpolation
between the two neighbours on each side of the gradient direction, and hysteresis (8-connected
segments of the low mask that contain a high-mask pixel). The 1-pixel image border is never an
edge.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["canny"]

# (weight numerator, denominator) per sector, and the neighbour offsets (d_row, d_col) of the
# "plus" side; the "minus" side is the point reflection. Sectors are applied in this order and
# later ones win on ties, as in scikit-image.
_SECTORS = (
    # 0-45 degrees: |gy| >= |gx|, gy and gx of the same sign
    ("same", "rows", ((1, 0), (1, 1)), ((-1, 0), (-1, -1))),
    # 45-90: |gy| <= |gx|, same sign
    ("same", "cols", ((0, 1), (1, 1)), ((0, -1), (-1, -1))),
    # 90-135: |gy| <= |gx|, opposite signs
    ("opposite", "cols", ((0, 1), (-1, 1)), ((0, -1), (1, -1))),
    # 135-180: |gy| >= |gx|, opposite signs
    ("opposite", "rows", ((-1, 0), (-1, 1)), ((1, 0), (1, -1))),
)


def _sobel(a: np.ndarray, axis: int) -> np.ndarray:
    """`scipy.ndimage.sobel` along spatial `axis` of `(n, H, W)`, never mixing images."""
    other = 2 if axis == 1 else 1
    d = ndimage.correlate1d(a, [-1.0, 0.0, 1.0], axis=axis, mode="reflect")
    return ndimage.correlate1d(d, [1.0, 2.0, 1.0], axis=other, mode="reflect")


def _shifted(a: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """`out[:, i, j] = a[:, i + dr, j + dc]` (0 beyond the border)."""
    out = np.zeros_like(a)
    h, w = a.shape[1:]
    out[:, max(-dr, 0) : h - max(dr, 0), max(-dc, 0) : w - max(dc, 0)] = a[
        :, max(dr, 0) : h + min(dr, 0), max(dc, 0) : w + min(dc, 0)
    ]
    return out


def canny(
    images: np.ndarray, sigma: float = 1.0, low: float = 0.1, high: float = 0.2
) -> np.ndarray:
    """Edge maps `(n, H, W)` bool of grayscale `images` `(n, H, W)` in [0, 1].

    `low` and `high` are the hysteresis thresholds on the gradient magnitude (scikit-image's
    defaults for float images).
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"canny needs a batch of grayscale images (n, H, W); got {x.shape}")
    h, w = x.shape[1:]
    if h < 3 or w < 3:
        return np.zeros(x.shape, bool)
    bleed = ndimage.gaussian_filter(np.ones((h, w)), sigma, mode="constant")
    smooth = ndimage.gaussian_filter(x, (0.0, sigma, sigma), mode="constant")
    smooth /= bleed + np.finfo(np.float64).eps
    gy, gx = _sobel(smooth, 1), _sobel(smooth, 2)  # derivatives down rows / along columns
    ay, ax = np.abs(gy), np.abs(gx)
    magnitude = np.hypot(gy, gx)
    inner = np.zeros((h, w), bool)
    inner[1:-1, 1:-1] = True
    candidate = inner & (magnitude > 0)
    same = ((gy >= 0) & (gx >= 0)) | ((gy <= 0) & (gx <= 0))
    opposite = ((gy <= 0) & (gx >= 0)) | ((gy >= 0) & (gx <= 0))
    weight = {  # interpolation weights; 0 where undefined (those points are never candidates)
        "rows": np.divide(ax, ay, out=np.zeros_like(ax), where=ay > 0),
        "cols": np.divide(ay, ax, out=np.zeros_like(ay), where=ax > 0),
    }
    maxima = np.zeros(x.shape, bool)
    for signs, major, plus, minus in _SECTORS:
        sector = candidate & (same if signs == "same" else opposite)
        sector &= (ay >= ax) if major == "rows" else (ay <= ax)
        wt = weight[major]
        ok = np.ones(x.shape, bool)
        for side in (plus, minus):
            (r1, c1), (r2, c2) = side
            mix = _shifted(magnitude, r2, c2) * wt + _shifted(magnitude, r1, c1) * (1 - wt)
            ok &= mix <= magnitude
        maxima = np.where(sector, ok, maxima)
    strong = maxima & (magnitude >= high)
    weak = maxima & (magnitude >= low)
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True  # 8-connected within an image, never across images
    labels, count = ndimage.label(weak, structure)
    if count == 0:
        return weak
    keep = np.zeros(count + 1, bool)
    keep[np.unique(labels[strong])] = True
    keep[0] = False
    return keep[labels]
