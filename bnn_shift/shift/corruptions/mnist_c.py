"""MNIST-C (Mu & Gilmer 2019): the 15 benchmark corruptions, each on a whole batch at once.

A port of the published generator (google-research/mnist-c, `corruptions.py`) with its
parameters. Where a corruption there has a 5-level severity list, all 5 are available and the
default is the level of that function's default argument (assumed to be the one used for the
static release); stripe, dotted_line, zigzag and canny_edges have one level. The release's
`identity` set (the clean images) is `MNIST_C_EXTRA["identity"]`, outside the 15. Images are
`(n, H, W, C)` float32 in [0, 1] (the generator works on 0..255 and divides by 255); the
code is written for 28 x 28 digits but accepts other sizes, scaling the geometry where the
original hard-codes 28. Quirks of the original kept on purpose: glass_blur blurs down the
rows only (see its docstring) and truly swaps pixels (its images are 2-D); shear uses
scikit-image's old shear convention; zigzag's last vertex uses the original's formula.
dotted_line and zigzag divide with Python 3's true division: the published code divides
integers with `/`, which under Python 2 (the release notebook's kernel) floors and gives
other lines for most draws; which one made the release cannot be told from the code.
Deliberate differences from the original:

- motion_blur uses a numpy port of ImageMagick's motion-blur kernel instead of Wand
  (`_ops.motion_blur`), then truncates to 8 bits as ImageMagick's output does.
- canny_edges uses a batched re-implementation of `skimage.feature.canny` (`_canny`).
- fog's plasma fractal is computed in float32 with 16-bit uniform draws (`_ops`).
- Random draws come from one `numpy.random.Generator` per call, so images are corrupted
  independently but not with the original's global-state random stream.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bnn_shift.shift.corruptions import _ops
from bnn_shift.shift.corruptions._canny import canny
from bnn_shift.shift.corruptions._corruption import Corruption
from bnn_shift.shift.corruptions._warp import affine_warp

__all__ = ["LEVELS", "MNIST_C", "MNIST_C_EXTRA", "MNIST_C_NAMES", "MNIST_C_RELEASE"]

# severity s uses LEVELS[name][s - 1]; the default severity is given in _DEFAULT_SEVERITY
LEVELS: dict[str, tuple] = {
    "shot_noise": (60, 25, 12, 5, 3),  # Poisson rate c
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),  # salt-and-pepper amount
    # (sigma, max_delta, iterations)
    "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),  # (radius, sigma)
    "shear": (0.2, 0.4, 0.6, 0.8, 1.0),  # shear angle, radians
    "scale": (1 / 0.9, 1 / 0.8, 1 / 0.7, 1 / 0.6, 1 / 0.5),  # inverse-map scale
    "rotate": (0.2, 0.4, 0.6, 0.8, 1.0),  # radians
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),  # added to HSV value
    "translate": (1, 2, 3, 4, 5),  # pixels in x and in y
    "fog": ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),  # (strength, decay)
    # (liquid mean, liquid std, liquid blur sigma, threshold, mask blur sigma)
    "spatter": (
        (0.65, 0.3, 4, 0.69, 0.6),
        (0.65, 0.3, 3, 0.68, 0.6),
        (0.65, 0.3, 2, 0.68, 0.5),
        (0.65, 0.3, 1, 0.65, 1.5),
        (0.67, 0.4, 1, 0.65, 1.5),
    ),
}
_DEFAULT_SEVERITY = {
    "shot_noise": 5,
    "impulse_noise": 4,
    "glass_blur": 1,
    "motion_blur": 1,
    "shear": 2,
    "scale": 3,
    "rotate": 2,
    "brightness": 5,
    "translate": 3,
    "fog": 5,
    "spatter": 4,
}
_MUD = np.float32(63 / 255)
_FOG_MAPSIZE = 256
_CHUNK = 512  # images per block in canny_edges
_FOG_CHUNK = 128  # plasma maps (256 x 256 each) per block


def _f32(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)


def identity(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """The release's `identity` set: the clean images."""
    return np.array(x, dtype=np.float32)


def shot_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _ops.shot(x, LEVELS["shot_noise"][severity - 1], rng)


def impulse_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _ops.impulse(x, LEVELS["impulse_noise"][severity - 1], rng)


def glass_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """The generator passes a 2-D (28, 28) image to skimage's `gaussian(...,
    multichannel=True)`, which takes the columns for channels: its blur runs down the rows
    only, and so does this one. Each swap happens with probability 1/2."""
    sigma, delta, iterations = LEVELS["glass_blur"][severity - 1]
    return _ops.glass_blur(x, (sigma, 0.0), delta, iterations, rng, swap_prob=0.5)


def motion_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = LEVELS["motion_blur"][severity - 1]
    angles = rng.uniform(-45.0, 45.0, size=len(x))  # (n,) degrees
    return _ops.truncate_8bit(_ops.motion_blur(x, radius, sigma, angles))


def _centred_warp(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Warp by linear inverse maps `a` `(n, 2, 2)` that keep the image centre fixed."""
    h, w = x.shape[1:3]
    centre = np.array([(w - 1) / 2, (h - 1) / 2])  # (col, row); (13.5, 13.5) for 28 x 28
    return affine_warp(x, a, centre - a @ centre)


def _signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), size=shape)


def shear(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """skimage `AffineTransform(shear=s)` as the generator's scikit-image defined it (`[[1,
    -sin s], [0, cos s]]`; current releases use `tan`), random sign per image, centred."""
    s = LEVELS["shear"][severity - 1] * _signs(rng, (len(x),))
    a = np.zeros((len(x), 2, 2))
    a[:, 0, 0], a[:, 0, 1], a[:, 1, 1] = 1.0, -np.sin(s), np.cos(s)
    return _centred_warp(x, a)


def rotate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Rotation by a random-signed angle per image about the image centre."""
    r = LEVELS["rotate"][severity - 1] * _signs(rng, (len(x),))
    cos, sin = np.cos(r), np.sin(r)
    return _centred_warp(x, np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1))


def scale(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Zoom out about the centre: the inverse map scales by 1/0.9 ... 1/0.5."""
    a = np.broadcast_to(np.eye(2) * LEVELS["scale"][severity - 1], (len(x), 2, 2))
    return _centred_warp(x, a)


def translate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Shift by `c` pixels along each axis, random sign per axis and image; the inverse
    map adds `(dx, dy)`, so the content moves by `(-dx, -dy)`."""
    shift = LEVELS["translate"][severity - 1] * _signs(rng, (len(x), 2))  # (n, 2) = (dx, dy)
    return affine_warp(x, np.eye(2), shift)


def brightness(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """HSV value + c (RGB images); gray images go gray -> RGB -> HSV -> RGB -> gray, which
    for a gray pixel is exactly `clip(x + c, 0, 1)` (hue and saturation are 0 and skimage's
    gray weights sum to 1), so that is computed directly."""
    c = LEVELS["brightness"][severity - 1]
    if x.shape[-1] == 1:
        return _f32(x + np.float32(c))
    if x.shape[-1] != 3:
        raise ValueError(f"brightness needs 1 (gray) or 3 (RGB) channels; got {x.shape[-1]}")
    hsv = _ops.rgb_to_hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0.0, 1.0)
    return _f32(_ops.hsv_to_rgb(hsv))


def stripe(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Invert the left and right quarters of the columns (0-6 and 21-27 of 28)."""
    y = np.array(x, dtype=np.float32)
    k = y.shape[2] // 4
    y[:, :, :k] = 1.0 - y[:, :, :k]
    y[:, :, y.shape[2] - k :] = 1.0 - y[:, :, y.shape[2] - k :]
    return y


def fog(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Add `s` x the top-left crop of a 256 x 256 plasma fractal, then scale by
    `max / (max + s)` (`max` = the clean image's maximum)."""
    strength, decay = LEVELS["fog"][severity - 1]
    n, h, w, _ = x.shape
    size = max(_FOG_MAPSIZE, 1 << (max(h, w) - 1).bit_length())
    plasma = _plasma_crops(n, size, decay, max(h, w), rng)[:, :h, :w, None]
    peak = x.max(axis=(1, 2, 3), keepdims=True)  # (n, 1, 1, 1)
    s = np.float32(strength)
    return _f32((x + s * plasma) * (peak / (peak + s)))


def _plasma_crops(n: int, size: int, decay: float, crop: int, rng) -> np.ndarray:
    """`(n, crop, crop)` plasma crops, built in blocks of `_FOG_CHUNK` maps on a few
    threads (numpy releases the GIL); block `i` draws from the `i`-th child of `rng`, so
    the result does not depend on the thread count."""
    starts = list(range(0, n, _FOG_CHUNK))
    children = rng.spawn(len(starts))

    def block(i: int) -> np.ndarray:
        m = min(_FOG_CHUNK, n - starts[i])
        return _ops.plasma_fractal(m, size, decay, children[i], crop=crop)

    if not starts:
        return np.zeros((0, crop, crop), np.float32)
    with ThreadPoolExecutor(max_workers=min(_threads(), len(starts))) as pool:
        return np.concatenate(list(pool.map(block, range(len(starts)))))


def _threads() -> int:
    try:
        return max(1, min(4, len(os.sched_getaffinity(0))))
    except AttributeError:  # not Linux
        return max(1, min(4, os.cpu_count() or 1))


def spatter(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Mud: thresholded blurred Gaussian noise, its mask blurred and kept where >= 0.8, painted
    gray 63/255 over the image (one layer per image, shared by its channels)."""
    loc, std, sigma, threshold, mask_sigma = LEVELS["spatter"][severity - 1]
    n, h, w, _ = x.shape
    liquid = rng.normal(loc, std, size=(n, h, w, 1)).astype(np.float32)
    liquid = _ops.gaussian_blur(liquid, sigma)
    mask = _ops.gaussian_blur((liquid > threshold).astype(np.float32), mask_sigma)
    mask[mask < 0.8] = 0.0
    return _f32(x * (1.0 - mask) + _MUD * mask)


def _line(c0, r0, c1, r1, h: int, w: int) -> np.ndarray:
    """Soft line layers `(n, H, W)` through `(c0, r0)`-`(c1, r1)` (arrays `(n,)`).

    Intensity `log(1 - d / 2.3) + 1` clipped to [0, 1], `d` the vertical distance to the
    line; only columns `floor(c0) <= col < ceil(c1)` are drawn; nothing when `c1 == c0`.
    """
    c0, r0, c1, r1 = (np.asarray(v, np.float64) for v in (c0, r0, c1, r1))
    cols = np.arange(w, dtype=np.float64)
    drawn = c1 != c0
    slope = np.where(drawn, (r1 - r0) / np.where(drawn, c1 - c0, 1.0), 0.0)
    centre = (slope[:, None] * (cols - c0[:, None]) + r0[:, None]).astype(np.float32)  # (n, W)
    dist = np.abs(np.arange(h, dtype=np.float32)[None, :, None] - centre[:, None, :])
    # 1 + log(1 - d / 2.3) is negative (clipped to 0) from d = 2.3 (1 - 1/e) ~ 1.45 on
    layer = np.clip(np.log1p(-np.minimum(dist, np.float32(2.29)) / np.float32(2.3)) + 1, 0, 1)
    span = (cols >= np.floor(c0)[:, None]) & (cols < np.ceil(c1)[:, None]) & drawn[:, None]
    layer *= span[:, None, :]
    return layer  # (n, H, W) float32


def dotted_line(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A line from column 0 to column W-1 between two random rows, with every other 2-column
    block (columns 0-1, 4-5, ...) blanked, added to the image."""
    r0, r1 = rng.integers(0, x.shape[1] - 1, size=(2, len(x)))
    return draw_dotted_line(x, r0, r1)


def draw_dotted_line(x: np.ndarray, r0: np.ndarray, r1: np.ndarray) -> np.ndarray:
    """`dotted_line` with given start and end rows `(n,)`."""
    n, h, w, _ = x.shape
    layer = _line(np.zeros(n), r0, np.full(n, w - 1.0), r1, h, w)
    layer[:, :, (np.arange(w) // 2) % 2 == 0] = 0.0
    return _f32(x + layer[..., None])


def _zigzag_points(r0: np.ndarray, r1: np.ndarray, c0: float, c1: float) -> np.ndarray:
    """Vertices `(2, n, k)` (cols, rows) of each image's zigzag, padded by repeating the last.

    Along a straight line of length `d` the vertices are (0, 0), ((2i + 1) a, (-1)^i b) while
    `(2i + 1) a <= d` (a = b = 2) and, if `d` is not a multiple of 2a, a last point at
    `(d, r_last / (2 (d - 2a floor(d / 2a))))` (the original's formula); then rotated onto the
    slope and moved to `(c0, r0)`.
    """
    a = b = 2.0
    theta = np.arctan((r1 - r0) / (c1 - c0))
    d = (c1 - c0) / np.cos(theta)  # (n,)
    count = np.floor((d - a) / (2 * a)).astype(np.int64) + 1  # zig vertices per image
    k = int(count.max()) + 2
    i = np.arange(k - 2)
    pc, pr = np.full((2, len(d), k), np.nan)
    pc[:, 0] = pr[:, 0] = 0.0
    inside = i < count[:, None]
    pc[:, 1:-1] = np.where(inside, (2 * i + 1) * a, np.nan)
    pr[:, 1:-1] = np.where(inside, (-1.0) ** i * b, np.nan)
    last_r = (-1.0) ** (count - 1) * b
    whole = 2 * a * np.floor(d / (2 * a))
    tail = d != whole
    rows = np.arange(len(d))
    pc[rows, count + 1] = np.where(tail, d, np.nan)
    pr[rows, count + 1] = np.where(tail, last_r / (2 * (d - whole)), np.nan)
    filled = np.where(np.isnan(pc), 0, np.arange(k))
    filled = np.maximum.accumulate(filled, axis=1)  # forward-fill the padding
    pc, pr = np.take_along_axis(pc, filled, 1), np.take_along_axis(pr, filled, 1)
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    return np.stack([pc * cos - pr * sin + c0, pc * sin + pr * cos + r0[:, None]])


def zigzag(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A zigzag (segment length and width 2 px) from column 2 to W-3, starting at a random
    row and rising or falling up to 5 rows; its segments are added one by one, clipping."""
    r0 = rng.integers(0, x.shape[1] - 1, size=len(x))
    return draw_zigzag(x, r0, r0 + rng.integers(-5, 5, size=len(x)))


def draw_zigzag(x: np.ndarray, r0: np.ndarray, r1: np.ndarray) -> np.ndarray:
    """`zigzag` with given start rows `r0` and end rows `r1` `(n,)`."""
    _, h, w, _ = x.shape
    r0, r1 = np.asarray(r0, np.float64), np.asarray(r1, np.float64)
    cs, rs = _zigzag_points(r0, r1, 2.0, w - 3.0)  # (n, k) each
    y = np.array(x, dtype=np.float32)
    for j in range(1, cs.shape[1]):
        layer = _line(cs[:, j - 1], rs[:, j - 1], cs[:, j], rs[:, j], h, w)
        y = np.clip(y + layer[..., None], 0.0, 1.0)
    return y


def canny_edges(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Binary Canny edge map (scikit-image defaults: sigma 1, thresholds 0.1 / 0.2), each
    channel on its own."""
    n, h, w, c = x.shape
    planes = np.moveaxis(x, -1, 1).reshape(n * c, h, w)
    edges = np.concatenate(
        [canny(planes[i : i + _CHUNK]) for i in range(0, len(planes), _CHUNK)]
        or [np.zeros((0, h, w), bool)]
    )
    return np.moveaxis(edges.reshape(n, c, h, w), 1, -1).astype(np.float32)


_FUNCTIONS = {
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "shear": shear,
    "scale": scale,
    "rotate": rotate,
    "brightness": brightness,
    "translate": translate,
    "stripe": stripe,
    "fog": fog,
    "spatter": spatter,
    "dotted_line": dotted_line,
    "zigzag": zigzag,
    "canny_edges": canny_edges,
}
MNIST_C_NAMES: tuple[str, ...] = tuple(_FUNCTIONS)  # the published order (identity left out)
# the release's directories in its order (the generator's CORRUPTIONS): identity, then the 15
MNIST_C_RELEASE: tuple[str, ...] = ("identity", *MNIST_C_NAMES)


def _entry(name: str, fn) -> Corruption:
    levels = tuple(range(1, len(LEVELS[name]) + 1)) if name in LEVELS else (1,)
    return Corruption(name, "mnist-c", levels, _DEFAULT_SEVERITY.get(name, 1), fn)


MNIST_C: dict[str, Corruption] = {name: _entry(name, _FUNCTIONS[name]) for name in MNIST_C_NAMES}
# in the release but not one of the 15 corruptions (nor in their mean)
MNIST_C_EXTRA: dict[str, Corruption] = {"identity": _entry("identity", identity)}
