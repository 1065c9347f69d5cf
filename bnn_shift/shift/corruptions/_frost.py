"""Frost textures for CIFAR-10-C's frost corruption: user-supplied photos or a procedural stand-in.

The original blends each image with a random crop of one of six frost photographs shipped
with the generator (`frost1.png` ... `frost6.jpg`). Those photos are not distributed with
bnn-shift. If `$BNN_SHIFT_FROST_DIR` names a directory holding them, they are used exactly as
the original does; otherwise a procedural texture takes their place, which is NOT the
published corruption (see `procedural_frost`).
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from bnn_shift.shift.corruptions._ops import motion_blur, plasma_fractal
from bnn_shift.shift.corruptions._resample import sample_bilinear

__all__ = ["ENV_FROST_DIR", "frost_crops", "load_frost_photos", "procedural_frost"]

ENV_FROST_DIR = "BNN_SHIFT_FROST_DIR"
_SUFFIXES = (".png", ".jpg", ".jpeg")
_RESIZE = 0.2  # the CIFAR script shrinks each photo to a fifth before cropping
_N_DRAWN = 5  # the original draws randint(5): only the first five photos are ever used
_TINT = np.array([0.86, 0.93, 1.0], np.float32)  # bluish white
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _cv2_linear_shrink(photo: np.ndarray, factor: float) -> np.ndarray:
    """OpenCV `resize(photo, fx=factor, fy=factor)` (bilinear, half-pixel centres, no
    antialiasing) of one `(H, W, 3)` photo."""
    h, w = photo.shape[:2]
    oh, ow = round(h * factor), round(w * factor)
    rows = (np.arange(oh) + 0.5) / factor - 0.5
    cols = (np.arange(ow) + 0.5) / factor - 0.5
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return sample_bilinear(photo[None], rr[None], cc[None], mode="nearest")[0]


@functools.lru_cache(maxsize=4)
def load_frost_photos(directory: str) -> tuple[np.ndarray, ...]:
    """The frost photos in `directory` (sorted by name), shrunk to a fifth, as float32 RGB
    `(h, w, 3)` in [0, 1]. Only the first five are returned: the original never draws the
    sixth."""
    folder = Path(directory).expanduser()
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _SUFFIXES)
    if not files:
        raise FileNotFoundError(
            f"${ENV_FROST_DIR}={directory} holds no .png/.jpg frost photos; put frost1.png ... "
            f"frost6.jpg from the CIFAR-10-C generator there, or unset {ENV_FROST_DIR} to use "
            "the procedural texture"
        )
    photos = []
    for path in files[:_N_DRAWN]:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
        photos.append(_cv2_linear_shrink(rgb, _RESIZE))
    return tuple(photos)


def _photo_crops(
    photos: tuple[np.ndarray, ...], n: int, h: int, w: int, rng: np.random.Generator
) -> np.ndarray:
    """One random `(h, w)` crop of a random photo per image -> `(n, h, w, 3)`."""
    for p in photos:
        if p.shape[0] <= h or p.shape[1] <= w:
            raise ValueError(
                f"a frost photo shrunk to {p.shape[:2]} is too small for {h}x{w} images; "
                f"unset {ENV_FROST_DIR} to use the procedural texture"
            )
    which = rng.integers(len(photos), size=n)
    out = np.empty((n, h, w, 3), np.float32)
    for k, photo in enumerate(photos):
        idx = np.flatnonzero(which == k)
        top = rng.integers(0, photo.shape[0] - h, size=idx.size)
        left = rng.integers(0, photo.shape[1] - w, size=idx.size)
        rows = top[:, None, None] + np.arange(h)[None, :, None]  # (m, h, 1)
        cols = left[:, None, None] + np.arange(w)[None, None, :]  # (m, 1, w)
        out[idx] = photo[rows, cols]
    return out


def procedural_frost(n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural frost texture `(n, h, w, 3)` in [0, 1]: a stand-in, not the photos.

    Ice needles (sparse seeds smeared along three random directions with the motion-blur
    kernel) over a cloudy haze (a plasma fractal), tinted bluish white; mean brightness
    about 0.4. It mimics the look of the frost photos, not their pixel statistics.
    """
    size = 1 << max(1, math.ceil(math.log2(max(h, w))))
    haze = plasma_fractal(n, size, 2.0, rng)[:, :h, :w, None]  # (n, h, w, 1)
    radius = max(2.0, min(h, w) / 6)
    seeds = (rng.random((n, h, w, 1)) < 0.04).astype(np.float32)
    needles = np.zeros((n, h, w, 1), np.float32)
    for _ in range(3):
        angles = rng.uniform(-180.0, 180.0, size=n)
        needles += motion_blur(seeds, radius, radius / 2, angles)
    needles = np.sqrt(np.clip(needles * (2 * radius + 1) / 3, 0.0, 1.0))
    intensity = np.clip(0.45 * haze + 0.6 * needles, 0.0, 1.0)
    return (intensity * _TINT).astype(np.float32)


def frost_crops(n: int, h: int, w: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """Frost textures `(n, h, w, channels)` for `channels` in {1, 3}: crops of the photos
    in `$BNN_SHIFT_FROST_DIR` when it is set, else `procedural_frost`. Grayscale images
    get the texture's luminance."""
    directory = os.environ.get(ENV_FROST_DIR)
    if directory:
        tex = _photo_crops(load_frost_photos(directory), n, h, w, rng)
    else:
        tex = procedural_frost(n, h, w, rng)
    return tex if channels == 3 else (tex @ _LUMA)[..., None]
