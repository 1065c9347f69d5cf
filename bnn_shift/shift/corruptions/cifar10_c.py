"""CIFAR-10-C (Hendrycks & Dietterich 2019): 19 corruptions x 5 severities, batched.

A port of the CIFAR generator (hendrycks/robustness, `make_cifar_c.py`) with its constants
(not ImageNet-C's), reproducing what its libraries did at the time of the release (numpy
1.19, SciPy < 1.6, OpenCV 4.2, ImageMagick 6.9). Images are `(n, H, W, C)` float32 in
[0, 1]; results are float32 in [0, 1], not yet stored as 8 bits (the release stores
`np.uint8(x * 255)`, which truncates: `corruptions.to_uint8(y, "cifar10-c")`). Written for
32 x 32 but accepts any size: the few 32-pixel constants (elastic_transform) scale with
`min(H, W)`. Noise, blur, contrast, fog, elastic_transform and pixelate work on any number
of channels; brightness, snow, frost, spatter and jpeg_compression need 1 or 3; saturate
needs 3. Release behaviours kept on purpose:

- glass_blur copies pixels instead of swapping them, as the generator's swap line does on
  3-channel numpy views (`_ops.glass_blur(copy=True)`).
- motion_blur and snow use a numpy port of ImageMagick's motion-blur kernel
  (`_ops.motion_blur`) instead of Wand, truncated to 8 bits as ImageMagick's output is.
- elastic_transform: OpenCV's fixed-point `warpAffine` (1/32 px grid) and SciPy < 1.6's
  `map_coordinates(mode="reflect")` border (`_resample`), not today's SciPy.
- spatter's 8-bit cast of the liquid layer wraps values above 1 around, as
  `(liquid * 255).astype(np.uint8)` does (`_spatter`).
- pixelate goes through Pillow's 8-bit BOX resize, as the generator's PIL images do.

Deliberate differences from the original:

- frost: the six frost photos are not shipped. With `$BNN_SHIFT_FROST_DIR` pointing at them
  the original procedure is used; otherwise a procedural ice texture stands in, so frost
  results are NOT comparable with the published CIFAR-10-C (`_frost`).
- jpeg_compression uses the Pillow installed here, whose libjpeg-turbo decodes about one
  level (mean) from the release's libjpeg 9 (at most 63 levels at a few pixels).
- Random draws come from one `numpy.random.Generator` per call instead of the global
  stream, so results are reproducible but not the published images.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from bnn_shift.shift.corruptions import _ops
from bnn_shift.shift.corruptions._corruption import Corruption
from bnn_shift.shift.corruptions._frost import frost_crops
from bnn_shift.shift.corruptions._resample import (
    affine_from_points,
    apply_taps,
    clipped_zoom_taps,
    map_coordinates_pre16_reflect,
    opencv_warp_affine,
)
from bnn_shift.shift.corruptions._spatter import spatter as _spatter

__all__ = ["CIFAR10_C", "CIFAR10_C_BENCHMARK", "CIFAR10_C_EXTRA", "LEVELS"]

# severity s uses LEVELS[name][s - 1]
LEVELS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # noise std
    "shot_noise": (500, 250, 100, 75, 50),  # Poisson rate c
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # salt-and-pepper amount
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # (radius, alias)
    # (sigma, max_delta, iterations)
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # (radius, sigma)
    "zoom_blur": (1.06, 1.11, 1.16, 1.21, 1.26),  # zooms np.arange(1, z, 0.01)
    # (loc, scale, zoom, threshold, blur radius, blur sigma, blend)
    "snow": (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),  # (image, frost)
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),  # (strength, wibble decay)
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV value
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor on the deviation from the mean
    # (alpha, sigma, affine) in units of the image size (32 in CIFAR-10-C)
    "elastic_transform": (
        (0, 0, 0.08),
        (0.05, 0.2, 0.07),
        (0.08, 0.06, 0.06),
        (0.1, 0.04, 0.05),
        (0.1, 0.03, 0.03),
    ),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # fraction of the side kept
    "jpeg_compression": (80, 65, 58, 50, 40),  # JPEG quality
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),  # multiplicative noise std
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),  # sigma
    # (loc, scale, sigma, threshold, intensity, mode 0 = water / 1 = mud)
    "spatter": (
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),  # (HSV S factor, add)
}
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # OpenCV's RGB -> gray weights
_DEFAULT_SEVERITY = 3


def _level(name: str, severity: int):
    if isinstance(severity, bool) or severity not in range(1, 6):
        raise ValueError(f"CIFAR-10-C {name}: severity must be 1..5; got {severity!r}")
    return LEVELS[name][severity - 1]


def _channels(x: np.ndarray, name: str, allowed: tuple[int, ...]) -> int:
    c = x.shape[-1]
    if c not in allowed:
        want = "RGB images (3 channels)" if allowed == (3,) else "1 (gray) or 3 (RGB) channels"
        hint = "; saturation is undefined for grayscale" if c == 1 else ""
        raise ValueError(f"CIFAR-10-C {name} needs {want}; got {c} channels{hint}")
    return c


def _f32(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)


def _gray(x: np.ndarray) -> np.ndarray:
    """Luminance `(n, H, W, 1)` of RGB (or already gray) images."""
    return x if x.shape[-1] == 1 else (x @ _LUMA)[..., None]


# ------------------------------------------------------------------ noise


def pixel_gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """The "gaussian_noise" corruption: x + N(0, std^2) in [0, 1] pixel units."""
    std = np.float32(_level("gaussian_noise", severity))
    return _f32(x + std * rng.standard_normal(x.shape, dtype=np.float32))


def shot_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _ops.shot(x, _level("shot_noise", severity), rng)


def impulse_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _ops.impulse(x, _level("impulse_noise", severity), rng)


def speckle_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    std = np.float32(_level("speckle_noise", severity))
    return _f32(x + x * std * rng.standard_normal(x.shape, dtype=np.float32))


# ------------------------------------------------------------------ blur


def _defocus_kernel(radius: float, alias_sigma: float) -> np.ndarray:
    """The original's anti-aliased disk: a 17 x 17 disk indicator, normalised, blurred by
    OpenCV's 3 x 3 Gaussian (sigma `alias_sigma`), cropped to its nonzero support."""
    half = 8 if radius <= 8 else int(radius)
    grid = np.arange(-half, half + 1)
    disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    ksize = 3 if radius <= 8 else 5
    taps = np.exp(-((np.arange(ksize) - ksize // 2) ** 2) / (2 * alias_sigma**2))
    taps /= taps.sum()
    for axis in (0, 1):
        disk = ndimage.correlate1d(disk, taps, axis=axis, mode="mirror")
    rows, cols = np.nonzero(disk)
    r = max(half - rows.min(), rows.max() - half, half - cols.min(), cols.max() - half)
    return disk[half - r : half + r + 1, half - r : half + r + 1]


def defocus_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    kernel = _defocus_kernel(*_level("defocus_blur", severity)).astype(np.float32)
    out = ndimage.correlate(x, kernel[None, :, :, None], mode="mirror")
    return _f32(out)


def glass_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """The release's glass blur: its "swap" copies one pixel over the other (see
    `_ops.glass_blur`); the released CIFAR-10-C was made that way."""
    sigma, delta, iterations = _level("glass_blur", severity)
    return _ops.glass_blur(x, sigma, delta, iterations, rng, copy=True)


def motion_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = _level("motion_blur", severity)
    angles = rng.uniform(-45.0, 45.0, size=len(x))  # (n,) degrees
    return _ops.truncate_8bit(_ops.motion_blur(x, radius, sigma, angles))


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """The original's `clipped_zoom`: zoom the centre by `factor`, keep the size."""
    h, w = x.shape[1:3]
    return apply_taps(
        apply_taps(x, 1, clipped_zoom_taps(h, factor)), 2, clipped_zoom_taps(w, factor)
    )


def zoom_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """The mean of the image and its centre zooms by `np.arange(1, z, 0.01)` (the original's
    float quirks included: 7, 12, 16, 21 and 26 zooms)."""
    zooms = np.arange(1, _level("zoom_blur", severity), 0.01)
    n, h, w, c = x.shape
    # images on the last axis, so each zoom gathers whole contiguous rows and columns
    xt = np.ascontiguousarray(x.transpose(1, 2, 0, 3), dtype=np.float32).reshape(h, w, n * c)
    out = xt.copy()
    for z in zooms:
        rows = apply_taps(xt, 0, clipped_zoom_taps(h, float(z)))
        out += apply_taps(rows, 1, clipped_zoom_taps(w, float(z)))
    out = out.reshape(h, w, n, c).transpose(2, 0, 1, 3)
    return _f32(out / np.float32(len(zooms) + 1))


def gaussian_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _f32(_ops.gaussian_blur(x, _level("gaussian_blur", severity)))


# ------------------------------------------------------------------ weather


def snow(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Snow flakes: a thresholded, zoomed normal layer, motion-blurred downwards; the image
    is brightened toward `max(x, 1.5 gray + 0.5)` and the layer and its 180-degree rotation
    are added."""
    _channels(x, "snow", (1, 3))
    loc, scale, zoom, threshold, radius, sigma, blend = _level("snow", severity)
    n, h, w, _ = x.shape
    layer = rng.normal(loc, scale, size=(n, h, w, 1)).astype(np.float32)
    layer = _clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0
    layer = np.floor(np.clip(layer, 0.0, 1.0) * 255) / np.float32(255)  # the 8-bit PNG layer
    angles = rng.uniform(-135.0, -45.0, size=n)
    layer = _ops.truncate_8bit(_ops.motion_blur(layer, radius, sigma, angles))  # ImageMagick
    x = blend * x + (1 - blend) * np.maximum(x, _gray(x) * 1.5 + 0.5)
    return _f32(x + layer + np.rot90(layer, 2, axes=(1, 2)))


def frost(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """`a x + b frost`: see `_frost` — a procedural texture unless
    `$BNN_SHIFT_FROST_DIR` holds the original frost photos."""
    c = _channels(x, "frost", (1, 3))
    image_weight, frost_weight = _level("frost", severity)
    texture = frost_crops(len(x), x.shape[1], x.shape[2], c, rng)
    return _f32(np.float32(image_weight) * x + np.float32(frost_weight) * texture)


def fog(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    strength, decay = _level("fog", severity)
    n, h, w, _ = x.shape
    size = max(h, w)
    mapsize = 1 << max(1, (size - 1).bit_length())  # 32 for CIFAR, as the original
    haze = _ops.plasma_fractal(n, mapsize, decay, rng, crop=size)[:, :h, :w, None]
    peak = x.max(axis=(1, 2, 3), keepdims=True)  # (n, 1, 1, 1)
    out = (x + np.float32(strength) * haze) * (peak / (peak + np.float32(strength)))
    return _f32(out)


def spatter(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    _channels(x, "spatter", (1, 3))
    return _spatter(x, *_level("spatter", severity), rng)


# ------------------------------------------------------------------ digital


def _hsv_op(x: np.ndarray, channel: int, fn) -> np.ndarray:
    rgb = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
    hsv = _ops.rgb_to_hsv(rgb)
    hsv[..., channel] = np.clip(fn(hsv[..., channel]), 0.0, 1.0)
    out = _f32(_ops.hsv_to_rgb(hsv))
    return out[..., :1] if x.shape[-1] == 1 else out


def brightness(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """HSV value + c (gray images: the value is the pixel itself)."""
    _channels(x, "brightness", (1, 3))
    c = np.float32(_level("brightness", severity))
    return _hsv_op(x, 2, lambda v: v + c)


def saturate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """HSV saturation * m + a; severities 1-2 desaturate, 3-5 saturate."""
    _channels(x, "saturate", (3,))
    m, a = (np.float32(v) for v in _level("saturate", severity))
    return _hsv_op(x, 1, lambda s: s * m + a)


def contrast(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = np.float32(_level("contrast", severity))
    mean = x.mean(axis=(1, 2), keepdims=True)  # (n, 1, 1, C) per image and channel
    return _f32((x - mean) * c + mean)


def elastic_transform(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A random affine warp (three points moved by up to `affine`), then a displacement
    field of uniform noise smoothed by `sigma` and scaled by `alpha`.

    As the release's libraries computed them: the affine warp is OpenCV's `warpAffine`
    (source coordinates on a 1/32 px grid, border mirrored without the edge pixel) and the
    displacement is SciPy < 1.6's `map_coordinates(order=1, mode="reflect")`, whose border
    differs from today's "reflect" (see `_resample`).
    """
    n, h, w, _ = x.shape
    alpha, sigma, affine = (v * min(h, w) for v in _level("elastic_transform", severity))
    centre = np.array([w // 2, h // 2], np.float32)  # (x, y) as OpenCV's points
    side = max(1, min(h, w) // 3)
    corner = np.array([side, -side], np.float32)
    src = np.stack([centre + side, centre + corner, centre - side])  # (3, 2)
    dst = src + rng.uniform(-affine, affine, size=(n, 3, 2)).astype(np.float32)
    forward = affine_from_points(np.broadcast_to(src, dst.shape), dst)  # getAffineTransform
    warped = opencv_warp_affine(x, forward)  # (n, H, W, C) float32
    field = rng.uniform(-1.0, 1.0, size=(2, n, h, w))
    field = ndimage.gaussian_filter(field, (0, 0, sigma, sigma), mode="reflect", truncate=3.0)
    field = (field * alpha).astype(np.float32)  # (dx, dy)
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = map_coordinates_pre16_reflect(warped, rows + field[1], cols + field[0])
    return _f32(out)


def pixelate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Pillow's `BOX` resize to `int(side * c)` and back, on the 8-bit image (the
    generator's images are PIL images: Pillow rounds each pass to 8 bits)."""
    c = _level("pixelate", severity)
    n, h, w, channels = x.shape
    small = (int(w * c), int(h * c))
    planes = np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)  # (n, H, W, C)
    planes = np.moveaxis(planes, -1, 1).reshape(n * channels, h, w)
    out = np.empty(planes.shape, np.uint8)
    for i, plane in enumerate(planes):  # BOX works on each channel alone: one "L" image each
        image = Image.fromarray(plane).resize(small, Image.Resampling.BOX)
        out[i] = np.asarray(image.resize((w, h), Image.Resampling.BOX))
    out = np.moveaxis(out.reshape(n, channels, h, w), 1, -1)
    return (out / np.float32(255)).astype(np.float32)


def jpeg_compression(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Pillow JPEG round trip at the level's quality (one encode/decode per image)."""
    channels = _channels(x, "jpeg_compression", (1, 3))
    quality = _level("jpeg_compression", severity)
    pixels = np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)
    pixels = pixels[..., 0] if channels == 1 else pixels
    out = np.empty(pixels.shape, np.uint8)
    buffer = io.BytesIO()
    for i, image in enumerate(pixels):
        buffer.seek(0)
        buffer.truncate()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[i] = np.asarray(decoded)
    return (out.reshape(x.shape) / np.float32(255)).astype(np.float32)


# ------------------------------------------------------------------ registry

_FUNCTIONS = {
    "gaussian_noise": pixel_gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    "speckle_noise": speckle_noise,
    "gaussian_blur": gaussian_blur,
    "spatter": spatter,
    "saturate": saturate,
}
# the 15 corruptions of the benchmark mean, then the 4 extras, in the release's order
CIFAR10_C_BENCHMARK: tuple[str, ...] = tuple(_FUNCTIONS)[:15]
CIFAR10_C_EXTRA: tuple[str, ...] = tuple(_FUNCTIONS)[15:]
CIFAR10_C: dict[str, Corruption] = {
    name: Corruption(name, "cifar10-c", (1, 2, 3, 4, 5), _DEFAULT_SEVERITY, fn)
    for name, fn in _FUNCTIONS.items()
}
