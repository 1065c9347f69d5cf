"""Image-corruption primitives shared by the MNIST-C and CIFAR-10-C generators.

Every function acts on a whole batch at once. Images are float arrays `(n, H, W, C)` with
values in [0, 1]; random ones take a `numpy.random.Generator` and are deterministic given
its state. Results are float32 in [0, 1] unless said otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "TRUNCATE_SLACK",
    "gaussian_blur",
    "glass_blur",
    "hsv_to_rgb",
    "impulse",
    "motion_blur",
    "motion_blur_kernel",
    "plasma_fractal",
    "rgb_to_hsv",
    "shot",
    "truncate_8bit",
]

_MOTION_CHUNK = 1024  # images per edge-padded block in motion_blur
# Truncating to 8 bits takes values within this fraction of a level below an integer level as
# that level: float32 round-off (a blur whose weights sum to 1 - 1e-7, a denormalised input)
# must not drop an exact level by one. About 0.1 % of continuous values are rounded up by it.
TRUNCATE_SLACK = 2.0**-10


def truncate_8bit(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> the 8-bit level below, as `np.uint8(x * 255)` does, float32 in
    [0, 1] (`k / 255`); see `TRUNCATE_SLACK`."""
    levels = np.floor(np.clip(np.asarray(x, np.float64), 0.0, 1.0) * 255.0 + TRUNCATE_SLACK)
    return (np.minimum(levels, 255.0) / 255.0).astype(np.float32)


def check_images(x: np.ndarray, name: str = "x") -> np.ndarray:
    """`x` as a float array `(n, H, W, C)`; raises if it has another rank."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name} must be an image batch (n, H, W, C); got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    return x


def _spatial_sigma(sigma: float | Sequence[float]) -> tuple[float, float]:
    """A scalar or (sigma_rows, sigma_cols) as a validated pair."""
    pair = (sigma, sigma) if np.ndim(sigma) == 0 else tuple(sigma)
    if len(pair) != 2 or not all(math.isfinite(s) and s >= 0 for s in map(float, pair)):
        raise ValueError(f"sigma must be >= 0, a number or (rows, cols) pair; got {sigma!r}")
    return float(pair[0]), float(pair[1])


def shot(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: `Poisson(x * c) / c` clipped to [0, 1]; larger `c` = less noise."""
    x = check_images(x)
    if not c > 0:
        raise ValueError(f"shot-noise rate c must be > 0; got {c}")
    counts = rng.poisson(x.astype(np.float64) * c)  # (n, H, W, C)
    return np.clip(counts / c, 0.0, 1.0).astype(np.float32)


def impulse(x: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise: each value independently becomes 0 or 1 (equally likely) with
    probability `amount` (scikit-image `random_noise(mode="s&p")` semantics)."""
    x = check_images(x)
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"impulse amount must lie in [0, 1]; got {amount}")
    u = rng.random(x.shape)  # (n, H, W, C); u < amount flips, the lower half to pepper
    out = x.astype(np.float32, copy=True)
    out[u < amount] = 1.0
    out[u < amount / 2] = 0.0
    return out


def gaussian_blur(
    x: np.ndarray, sigma: float | Sequence[float], *, mode: str = "nearest"
) -> np.ndarray:
    """Gaussian filter over the spatial axes only, each channel separately.

    `sigma` is a number or a `(rows, cols)` pair (0 leaves that axis alone). Border
    `mode` and the 4-sigma truncation follow scikit-image's `filters.gaussian`.
    """
    x = check_images(x)
    sy, sx = _spatial_sigma(sigma)
    out = ndimage.gaussian_filter(x.astype(np.float32), (0.0, sy, sx, 0.0), mode=mode)
    return out


def glass_blur(
    x: np.ndarray,
    sigma: float | Sequence[float],
    max_delta: int,
    iterations: int,
    rng: np.random.Generator,
    *,
    swap_prob: float = 1.0,
    copy: bool = False,
) -> np.ndarray:
    """Glass blur: blur, quantise to 8 bits, local pixel swaps, blur again.

    The swap pass visits rows `H - d, ..., d + 1` and, in each, columns `W - d, ..., d + 1`
    (`d = max_delta`, both descending, as the originals do) and swaps the pixel with the one at
    a random offset in `[-d, d)` on each axis, with probability `swap_prob` (1 in CIFAR-10-C,
    0.5 in MNIST-C). Swaps chain, so positions are visited in order; each visit acts on the
    whole batch at once, every image with its own offsets. The 8-bit truncation after the
    first blur reproduces both generators' `np.uint8(... * 255)`.

    `copy=True` reproduces what the CIFAR-10-C generator's swap does on its 3-D `(H, W, 3)`
    images: `x[p], x[q] = x[q], x[p]` evaluates the right side as numpy *views*, so after the
    first assignment both hold pixel `q`; the visited pixel is overwritten by its partner and
    the partner is unchanged. MNIST-C's images are 2-D, where the same line swaps scalars.
    """
    x = check_images(x)
    d = int(max_delta)
    if d < 1 or iterations < 0 or not 0.0 <= swap_prob <= 1.0:
        raise ValueError(
            "glass_blur needs max_delta >= 1, iterations >= 0 and swap_prob in [0, 1]; got "
            f"{max_delta}, {iterations}, {swap_prob}"
        )
    n, h, w, c = x.shape
    y = truncate_8bit(gaussian_blur(x, sigma))
    flat = np.ascontiguousarray(y, dtype=np.float32).reshape(n, h * w, c)  # (n, H*W, C)
    batch = np.arange(n)
    positions = [(r, col) for r in range(h - d, d, -1) for col in range(w - d, d, -1)]
    for _ in range(int(iterations)):
        for r, col in positions:
            dr, dc = rng.integers(-d, d, size=(2, n))  # (n,) each
            rows = batch
            if swap_prob < 1.0:
                keep = rng.random(n) < swap_prob
                rows, dr, dc = batch[keep], dr[keep], dc[keep]
            p = r * w + col
            q = (r + dr) * w + (col + dc)  # (m,)
            if copy:  # the release's view semantics: pixel q over pixel p, q unchanged
                flat[rows, p] = flat[rows, q]
                continue
            here = flat[rows, p].copy()  # (m, C)
            flat[rows, p] = flat[rows, q]
            flat[rows, q] = here
    return np.clip(gaussian_blur(flat.reshape(n, h, w, c), sigma), 0.0, 1.0)


def motion_blur_kernel(radius: float, sigma: float, angle_deg: float) -> np.ndarray:
    """ImageMagick's motion-blur taps `(k, 3)`: rows `(d_row, d_col, weight)`.

    Width `k = 2 * ceil(radius) + 1`; weight `i` is `exp(-i^2 / (2 sigma^2))` normalised
    to sum 1 (one-sided: the output pixel averages itself and the pixels behind it along the
    angle); tap `i` sits at `round(i * (sin a, cos a))` (rows down, columns right; halves
    rounded down), as in ImageMagick's `MotionBlurImage`.
    """
    if not (radius > 0 and sigma > 0 and math.isfinite(angle_deg)):
        raise ValueError(f"motion blur needs radius > 0 and sigma > 0; got {radius}, {sigma}")
    width = 2 * math.ceil(radius) + 1
    i = np.arange(width, dtype=np.float64)
    weight = np.exp(-(i**2) / (2.0 * sigma**2))
    a = math.radians(angle_deg)
    d_row = np.ceil(i * math.sin(a) - 0.5)
    d_col = np.ceil(i * math.cos(a) - 0.5)
    return np.stack([d_row, d_col, weight / weight.sum()], axis=1)


def motion_blur(x: np.ndarray, radius: float, sigma: float, angles_deg: np.ndarray) -> np.ndarray:
    """Motion blur with ImageMagick's `-motion-blur {radius}x{sigma}+{angle}` kernel.

    A numpy port of ImageMagick's `MotionBlurImage` (used through Wand by both original
    generators): a one-sided, Gaussian-weighted line of `2 * ceil(radius) + 1` taps along
    the angle (see `motion_blur_kernel`), edge pixels repeated beyond the border. Each
    image gets its own angle `angles_deg` `(n,)`. ImageMagick's 8-bit output is not applied
    here: the generators' results are `truncate_8bit` of this (ImageMagick truncates).

    The images are sorted by angle, so for each tap the images sharing one pixel offset form
    contiguous runs, and each run is one shifted slice of the edge-padded batch.
    """
    x = check_images(x)
    n, h, w, _ = x.shape
    angles = np.broadcast_to(np.asarray(angles_deg, dtype=np.float64), (n,))
    taps = motion_blur_kernel(radius, sigma, 0.0)
    weight = taps[:, 2].astype(np.float32)  # the same for every angle
    i = np.arange(len(taps))
    a = np.radians(angles)[:, None]
    d_row = np.ceil(i * np.sin(a) - 0.5).astype(np.int64)  # (n, k)
    d_col = np.ceil(i * np.cos(a) - 0.5).astype(np.int64)
    pad = len(taps) - 1
    out = np.empty(x.shape, np.float32)
    order = np.argsort(angles, kind="stable")
    for start in range(0, n, _MOTION_CHUNK):
        sel = order[start : start + _MOTION_CHUNK]
        padded = np.pad(x[sel].astype(np.float32), ((0, 0), (pad, pad), (pad, pad), (0, 0)), "edge")
        acc = np.zeros((len(sel), h, w, x.shape[3]), np.float32)
        for k in range(len(taps)):
            dr, dc = d_row[sel, k], d_col[sel, k]
            cuts = np.flatnonzero((np.diff(dr) != 0) | (np.diff(dc) != 0)) + 1
            for lo, hi in zip([0, *cuts], [*cuts, len(sel)]):
                r0, c0 = pad + dr[lo], pad + dc[lo]
                acc[lo:hi] += weight[k] * padded[lo:hi, r0 : r0 + h, c0 : c0 + w]
        out[sel] = acc
    return np.clip(out, 0.0, 1.0)


def plasma_fractal(
    n: int,
    mapsize: int,
    wibble_decay: float,
    rng: np.random.Generator,
    *,
    crop: int | None = None,
) -> np.ndarray:
    """`n` periodic diamond-square height maps `(n, mapsize, mapsize)`, each rescaled to [0, 1].

    The generators' variant: corner (0, 0) starts at 0, the first displacement is
    `100 * U(-100, 100)`, and the displacement amplitude `w` (noise `w * U(-w, w)`) is
    divided by `wibble_decay` after each square + diamond pass. `mapsize` is a power of 2.
    `crop` returns only the top-left `(crop, crop)` corner of each map (still rescaled by
    the whole map's range), which skips building the full maps. Computed in float32 with
    16-bit uniform draws (see `_displace`); the originals use float64 throughout.
    """
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2; got {mapsize}")
    if not wibble_decay > 0:
        raise ValueError(f"wibble_decay must be > 0; got {wibble_decay}")
    crop = mapsize if crop is None else int(crop)
    if not 1 <= crop <= mapsize:
        raise ValueError(f"crop must lie in [1, mapsize={mapsize}]; got {crop}")
    corner = np.zeros((n, 1, 1), np.float32)  # the points on the current coarse grid
    wibble = 100.0
    while True:
        k = corner.shape[1]
        amp = wibble * wibble
        cp = _wrap_pad(corner, after=True)  # cp[i, j] = corner[i % k, j % k]
        # cell centres: mean of the 4 surrounding corners + noise
        centre = _displace(cp[:, :-1, :-1], cp[:, 1:, :-1], cp[:, :-1, 1:], cp[:, 1:, 1:], amp, rng)
        ct = _wrap_pad(centre, after=False)  # ct[i + 1, j + 1] = centre[i, j]
        # top-edge midpoints: centres below and above, corners left and right
        top = _displace(ct[:, 1:, 1:], ct[:, :-1, 1:], cp[:, :-1, :-1], cp[:, :-1, 1:], amp, rng)
        # left-edge midpoints: centres right and left, corners above and below
        left = _displace(ct[:, 1:, 1:], ct[:, 1:, :-1], cp[:, :-1, :-1], cp[:, 1:, :-1], amp, rng)
        parts = (corner, top, left, centre)
        wibble /= wibble_decay
        if 2 * k == mapsize:
            break
        corner = _interleave(*parts, size=2 * k)
    low = np.min([p.min(axis=(1, 2)) for p in parts], axis=0)[:, None, None]  # (n, 1, 1)
    high = np.max([p.max(axis=(1, 2)) for p in parts], axis=0)[:, None, None] - low
    half = (crop + 1) // 2
    grid = _interleave(*(p[:, :half, :half] for p in parts), size=2 * half)[:, :crop, :crop]
    return (grid - low) / np.where(high > 0, high, np.float32(1.0))


def _wrap_pad(a: np.ndarray, after: bool) -> np.ndarray:
    """`(n, k, k)` -> `(n, k + 1, k + 1)` with one periodic row and column appended
    (`after`) or prepended."""
    n, k, _ = a.shape
    out = np.empty((n, k + 1, k + 1), a.dtype)
    if after:
        out[:, :k, :k] = a
        out[:, k, :k] = a[:, 0]
        out[:, :, k] = out[:, :, 0]
    else:
        out[:, 1:, 1:] = a
        out[:, 0, 1:] = a[:, -1]
        out[:, :, 0] = out[:, :, -1]
    return out


def _displace(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, amp: float, rng
) -> np.ndarray:
    """Mean of four equal-shape grids plus `U(-amp, amp)` noise, float32.

    The uniform draw has 16-bit resolution (65,535 equally spaced levels from `-amp` to
    `amp`, symmetric about 0): cheaper than a float draw and indistinguishable once the map
    is rescaled to [0, 1] in float32.
    """
    out = np.add(a, b)
    out += c
    out += d
    out *= np.float32(0.25)
    levels = rng.integers(-32767, 32767, size=a.shape, dtype=np.int16, endpoint=True)
    out += np.multiply(levels, np.float32(amp / 32767.0), dtype=np.float32)
    return out


def _interleave(
    corner: np.ndarray, top: np.ndarray, left: np.ndarray, centre: np.ndarray, size: int
) -> np.ndarray:
    """Merge four `(n, k, k)` grids into `(n, 2k, 2k)`: corner at even rows/even cols,
    top at even/odd, left at odd/even, centre at odd/odd."""
    n, k, _ = corner.shape
    out = np.empty((n, k, 2, k, 2), np.float32)
    out[:, :, 0, :, 0] = corner
    out[:, :, 0, :, 1] = top
    out[:, :, 1, :, 0] = left
    out[:, :, 1, :, 1] = centre
    return out.reshape(n, size, size)


def rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    """RGB `(..., 3)` in [0, 1] to HSV `(..., 3)`, hue in [0, 1) (scikit-image convention:
    hue 0 and saturation 0 where the pixel is gray; on ties blue beats green beats red)."""
    x = np.asarray(x)
    if x.shape[-1:] != (3,):
        raise ValueError(f"rgb_to_hsv needs a last axis of 3 channels; got shape {x.shape}")
    dtype = np.result_type(x.dtype, np.float32)
    r, g, b = (x[..., i].astype(dtype) for i in range(3))
    v = np.maximum(np.maximum(r, g), b)
    delta = v - np.minimum(np.minimum(r, g), b)
    grey = delta == 0
    safe = np.where(grey, 1, delta)
    s = np.where(grey, 0, delta / np.where(v == 0, 1, v))
    h = np.where(r == v, (g - b) / safe, 0)
    h = np.where(g == v, 2 + (b - r) / safe, h)
    h = np.where(b == v, 4 + (r - g) / safe, h)
    h = np.where(grey, 0, (h / 6) % 1)
    return np.stack([h, s, v], axis=-1).astype(dtype, copy=False)


def hsv_to_rgb(x: np.ndarray) -> np.ndarray:
    """HSV `(..., 3)` (hue in [0, 1]) back to RGB `(..., 3)`; the inverse of `rgb_to_hsv`.

    Channel `c` is `v - v s clip(min(k, 4 - k), 0, 1)` with `k = (n_c + 6 h) mod 6` and
    `n = (5, 3, 1)` for (R, G, B): the piecewise-linear form of the six-sector formula.
    """
    x = np.asarray(x)
    if x.shape[-1:] != (3,):
        raise ValueError(f"hsv_to_rgb needs a last axis of 3 channels; got shape {x.shape}")
    dtype = np.result_type(x.dtype, np.float32)
    h, s, v = (x[..., i].astype(dtype) for i in range(3))
    six_h, chroma = 6 * h, v * s
    channels = []
    for offset in (5, 3, 1):
        k = (six_h + offset) % 6
        channels.append(v - chroma * np.clip(np.minimum(k, 4 - k), 0, 1))
    return np.stack(channels, axis=-1).astype(dtype, copy=False)
