"""Tests for bnn_shift.shift.corruptions.cifar10_c and its helpers (_resample, _spatter, _frost)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from bnn_shift.shift.corruptions import CIFAR10_C, corrupt
from bnn_shift.shift.corruptions import cifar10_c as c10
from bnn_shift.shift.corruptions._frost import ENV_FROST_DIR
from bnn_shift.shift.corruptions._ops import rgb_to_hsv
from bnn_shift.shift.corruptions._resample import (
    box_resize_matrix,
    map_coordinates_pre16_reflect,
    opencv_warp_affine,
)
from bnn_shift.shift.corruptions._spatter import chamfer_distance, equalize_hist, opencv_canny

NAMES = list(CIFAR10_C)
SEVERITIES = (1, 2, 3, 4, 5)
# corruptions without random draws
DETERMINISTIC = {
    "defocus_blur",
    "zoom_blur",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg_compression",
    "gaussian_blur",
    "saturate",
}
# constants grow with severity, so the distance from the clean image must grow too
MONOTONE = [
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "defocus_blur",
    "zoom_blur",
    "gaussian_blur",
    "snow",
    "fog",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg_compression",
]


@pytest.fixture(autouse=True)
def _no_frost_photos(monkeypatch):
    monkeypatch.delenv(ENV_FROST_DIR, raising=False)


def smooth_images(n: int = 4, h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    """Natural-ish test images ``(n, h, w, 3)``: smoothed noise stretched to [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random((n, h, w, 3)), (0, 2, 2, 0))
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    x = (x - lo) / (x.max(axis=(1, 2, 3), keepdims=True) - lo)
    return (0.1 + 0.8 * x).astype(np.float32)


def run(name: str, x: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    return CIFAR10_C[name].fn(x, severity, np.random.default_rng(seed))


def mean_change(name: str, x: np.ndarray, seed: int = 5) -> np.ndarray:
    return np.array([np.abs(run(name, x, s, seed) - x).mean() for s in SEVERITIES])


# ------------------------------------------------------------------ registry and contract


def test_release_order_and_benchmark_split():
    assert NAMES == [
        *("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur"),
        *("motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast"),
        *("elastic_transform", "pixelate", "jpeg_compression"),
        *("speckle_noise", "gaussian_blur", "spatter", "saturate"),
    ]
    assert c10.CIFAR10_C_BENCHMARK == tuple(NAMES[:15])
    assert c10.CIFAR10_C_EXTRA == tuple(NAMES[15:])
    for name, entry in CIFAR10_C.items():
        assert (entry.name, entry.benchmark, entry.severities) == (name, "cifar10-c", SEVERITIES)
        assert len(c10.LEVELS[name]) == 5


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_range_and_determinism(name):
    x = smooth_images(3, 16, 16)
    before = x.copy()
    for s in SEVERITIES:
        y = run(name, x, s, seed=1)
        assert y.shape == x.shape and y.dtype == np.float32
        assert np.isfinite(y).all() and y.min() >= 0.0 and y.max() <= 1.0
        assert np.array_equal(y, run(name, x, s, seed=1))
        assert np.abs(y - x).mean() > 1e-4, "every level changes the image"
        if name not in DETERMINISTIC:
            assert not np.array_equal(y, run(name, x, s, seed=2))
    assert np.array_equal(x, before), "the input must not be modified"


def test_corrupt_entry_point_uses_the_registry():
    x = smooth_images(2)
    a = corrupt(x, "fog", 4, seed=3, benchmark="cifar10-c")
    assert np.array_equal(a, corrupt(x, "fog", 4, seed=3, benchmark="cifar10-c"))
    assert not np.array_equal(a, corrupt(x, "fog", 4, seed=4, benchmark="cifar10-c"))
    with pytest.raises(ValueError, match="severities"):
        corrupt(x, "fog", 6, benchmark="cifar10-c")


def test_other_sizes_and_grayscale():
    rgb = smooth_images(2, 20, 28)
    gray = rgb[..., :1]
    for name in NAMES:
        assert run(name, rgb, 5).shape == rgb.shape
        if name != "saturate":
            assert run(name, gray, 5).shape == gray.shape
    with pytest.raises(ValueError, match="grayscale"):
        run("saturate", gray, 1)
    with pytest.raises(ValueError, match="1 \\(gray\\) or 3 \\(RGB\\)"):
        run("jpeg_compression", np.zeros((1, 8, 8, 2), np.float32), 1)
    with pytest.raises(ValueError, match="severity"):
        run("contrast", rgb, 0)


# ------------------------------------------------------------------ severity


@pytest.mark.parametrize("name", MONOTONE)
def test_distance_grows_with_severity(name):
    d = mean_change(name, smooth_images(4))
    assert np.all(np.diff(d) > 0), d


def test_severity_where_constants_are_not_monotone():
    x = smooth_images(4)
    glass = mean_change("glass_blur", x)  # (sigma, iterations): 2 swap passes beat 1
    assert glass[3] > glass[1] and glass[4] > glass[2]
    motion = mean_change("motion_blur", x)  # sigma 1, 1.5, 2, 2, 2.5 (radius 6, 6, 6, 8, 9)
    assert motion[0] < motion[1] < motion[2] < motion[4]
    assert motion[3] == pytest.approx(motion[2], rel=0.02)  # taps beyond 6 weigh < 0.3 %
    spatter = mean_change("spatter", x)  # water at 1-3, mud at 4-5
    assert spatter[0] < spatter[1] < spatter[2] and spatter[3] < spatter[4]
    black = np.zeros((4, 32, 32, 3), np.float32)  # frost adds weight * texture to black
    frost = [run("frost", black, s, seed=5).mean() for s in SEVERITIES]
    weights = [w for _, w in c10.LEVELS["frost"]]
    assert np.allclose(np.array(frost) / weights, frost[0] / weights[0], rtol=1e-5)


def test_saturate_scales_hsv_saturation():
    x = smooth_images(2)
    hsv = rgb_to_hsv(x)
    for s in SEVERITIES:
        m, a = c10.LEVELS["saturate"][s - 1]
        out = rgb_to_hsv(run("saturate", x, s))
        expect = np.clip(hsv[..., 1] * m + a, 0, 1)
        assert np.allclose(out[..., 1], expect, atol=1e-5)
        assert np.allclose(out[..., 2], hsv[..., 2], atol=1e-6)  # value untouched


# ------------------------------------------------------------------ hand-computed cases


def test_contrast_of_a_constant_image_is_identity():
    x = np.full((2, 8, 8, 3), 0.3, np.float32)
    x[1] = [0.2, 0.5, 0.9]  # per-channel means
    for s in SEVERITIES:
        assert np.allclose(run("contrast", x, s), x, atol=1e-7)


def test_brightness_adds_c_to_value():
    gray = np.full((1, 4, 4, 3), 0.5, np.float32)
    x = smooth_images(2)
    for s in SEVERITIES:
        c = c10.LEVELS["brightness"][s - 1]
        assert np.allclose(run("brightness", gray, s), 0.5 + c, atol=1e-6)
        assert np.allclose(run("brightness", gray[..., :1], s), 0.5 + c, atol=1e-6)
        hsv, out = rgb_to_hsv(x), rgb_to_hsv(run("brightness", x, s))
        assert np.allclose(out[..., 2], np.minimum(hsv[..., 2] + c, 1), atol=1e-6)
        assert np.allclose(out[..., 1], hsv[..., 1], atol=1e-5)


def test_pixelate_is_pillows_8_bit_box_resize(monkeypatch):
    x = np.round(smooth_images(2) * 255) / np.float32(255)  # on the 8-bit grid
    pixels = np.round(x * 255).astype(np.uint8)
    for s in SEVERITIES:
        side = int(32 * c10.LEVELS["pixelate"][s - 1])
        box = Image.Resampling.BOX
        ref = [  # the generator's PIL path on RGB images
            np.asarray(Image.fromarray(p).resize((side, side), box).resize((32, 32), box))
            for p in pixels
        ]
        np.testing.assert_array_equal(np.rint(run("pixelate", x, s) * 255), ref)
    monkeypatch.setitem(c10.LEVELS, "pixelate", (1.0,) * 5)
    np.testing.assert_array_equal(run("pixelate", x, 1), x)
    monkeypatch.undo()
    ramp = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1) * 17 / 255  # 4 -> 2 -> 4
    blocks = np.floor(ramp[0, :, :, 0].reshape(2, 2, 2, 2).mean(axis=(1, 3)) * 255 + 0.5)
    expect = np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)  # 2 x 2 block means, rounded
    np.testing.assert_array_equal(np.rint(run("pixelate", ramp, 5)[0, ..., 0] * 255), expect)
    assert np.allclose(box_resize_matrix(7, 7), np.eye(7))


@pytest.mark.parametrize("name", ["gaussian_noise", "speckle_noise"])
def test_noise_std_matches_sigma(name):
    x = np.full((16, 32, 32, 3), 0.5, np.float32)  # 49,152 draws; clipping is 5 sigma away
    n = x.size
    for s in SEVERITIES:
        sigma = c10.LEVELS[name][s - 1] * (0.5 if name == "speckle_noise" else 1.0)
        d = (run(name, x, s, seed=s) - x).astype(np.float64)
        assert abs(d.mean()) < 5 * sigma / np.sqrt(n)
        assert abs(d.std() / sigma - 1) < 5 / np.sqrt(2 * n)


def test_shot_and_impulse_statistics():
    x = np.full((16, 32, 32, 3), 0.5, np.float32)
    n = x.size
    for s in SEVERITIES:
        c = c10.LEVELS["shot_noise"][s - 1]  # Poisson(x c) / c: variance x / c
        d = (run("shot_noise", x, s, seed=s) - x).astype(np.float64)
        assert abs(d.mean()) < 5 * np.sqrt(0.5 / c / n)
        assert abs(d.var() / (0.5 / c) - 1) < 5 * np.sqrt(2 / n)
        amount = c10.LEVELS["impulse_noise"][s - 1]
        y = run("impulse_noise", x, s, seed=s)
        for level in (0.0, 1.0):
            p = np.mean(y == level)
            assert abs(p - amount / 2) < 5 * np.sqrt(amount / 2 / n)
        assert np.all((y == 0) | (y == 1) | (y == x))


def _original_clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    """The generator's clipped_zoom for one (H, H, C) image, via scipy.ndimage.zoom."""
    h = img.shape[0]
    ch = int(np.ceil(h / factor))
    top = (h - ch) // 2
    out = ndimage.zoom(img[top : top + ch, top : top + ch], (factor, factor, 1), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim : trim + h, trim : trim + h]


def test_zoom_blur_matches_the_scipy_reference():
    x = smooth_images(2)
    for s in (1, 5):
        zooms = np.arange(1, c10.LEVELS["zoom_blur"][s - 1], 0.01)
        ref = [
            (xi + sum(_original_clipped_zoom(xi, z) for z in zooms)) / (len(zooms) + 1) for xi in x
        ]
        assert np.allclose(run("zoom_blur", x, s), np.clip(ref, 0, 1), atol=1e-5)


def test_blurs_keep_constant_images():
    x = np.full((2, 16, 16, 3), 100 / 255, np.float32)  # on the 8-bit grid for glass and motion
    for name in ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"):
        for s in SEVERITIES:
            assert np.allclose(run(name, x, s), x, atol=1e-6), (name, s)


def test_defocus_kernel_at_severity_1():
    g = np.exp(-np.array([1.0, 0.0, 1.0]) / (2 * 0.4**2))  # the disk is one pixel at r = 0.3
    g /= g.sum()
    assert np.allclose(c10._defocus_kernel(0.3, 0.4), np.outer(g, g))
    for radius, alias in c10.LEVELS["defocus_blur"]:
        assert c10._defocus_kernel(radius, alias).sum() == pytest.approx(1.0)


def test_fog_on_black_and_constant_images():
    black = np.zeros((2, 32, 32, 3), np.float32)
    v = 0.6
    flat = np.full((2, 32, 32, 3), v, np.float32)
    for s in SEVERITIES:
        strength = c10.LEVELS["fog"][s - 1][0]
        assert np.array_equal(run("fog", black, s), black)  # scaled by max / (max + s) = 0
        y = run("fog", flat, s)  # the haze spans [0, 1] over the 32 x 32 map
        assert y.max(axis=(1, 2, 3)) == pytest.approx([v, v], abs=1e-6)
        assert y.min(axis=(1, 2, 3)) == pytest.approx([v * v / (v + strength)] * 2, abs=1e-6)


def test_snow_never_darkens_and_motion_blur_is_8_bit():
    x = smooth_images(2)
    for s in SEVERITIES:
        assert np.all(run("snow", x, s) >= x)
        y = run("motion_blur", x, s) * 255
        assert np.allclose(y, np.round(y), atol=1e-4)


def test_spatter_water_adds_and_mud_blends_toward_brown():
    x = smooth_images(4)
    for s in (1, 2, 3):
        assert np.all(run("spatter", x, s) >= x)
    brown = np.array([63, 42, 20], np.float32) / 255
    for s in (4, 5):
        y = run("spatter", x, s)
        changed = np.any(y != x, axis=-1)
        assert changed.any()
        m = ((y - x) / (brown - x))[changed]  # out = x (1 - m) + m brown, m in [0.8, 1]
        assert np.allclose(m, m[:, :1], atol=1e-4) and np.all(m > 0.8 - 1e-4)


def test_jpeg_is_8_bit_and_close_to_the_input():
    x = smooth_images(2)
    errors = []
    for s in SEVERITIES:
        y = run("jpeg_compression", x, s) * 255
        assert np.array_equal(y, np.round(y))
        errors.append(np.abs(y / 255 - x).mean())
    assert max(errors) < 0.05


def test_elastic_identity_without_displacement(monkeypatch):
    x = smooth_images(2)
    monkeypatch.setitem(c10.LEVELS, "elastic_transform", ((0, 0, 0),) * 5)
    assert np.allclose(run("elastic_transform", x, 1), x, atol=1e-5)


class _Draws:
    """Stands in for a Generator: returns prepared arrays from ``uniform`` in order."""

    def __init__(self, *arrays):
        self.arrays = list(arrays)

    def uniform(self, low, high, size):
        out = self.arrays.pop(0)
        assert out.shape == tuple(size)
        return out


def test_elastic_composes_the_release_libraries():
    """Same draws: OpenCV's warpAffine of the 3-point map, then SciPy < 1.6's map_coordinates
    with the smoothed field (dx on columns, dy on rows); the primitives are pinned in
    test_release_fidelity."""
    x = smooth_images(1)
    rng = np.random.default_rng(0)
    alpha, sigma, affine = (v * 32 for v in c10.LEVELS["elastic_transform"][2])
    moves = rng.uniform(-affine, affine, (1, 3, 2))
    field = rng.uniform(-1, 1, (2, 1, 32, 32))
    out = c10.elastic_transform(x, 3, _Draws(moves, field))
    src = np.array([[26, 26], [26, 6], [6, 6]], np.float32)  # (x, y) points
    dst = src + moves[0].astype(np.float32)
    forward = np.linalg.solve(np.c_[src, np.ones(3)], dst).T  # (2, 3): dst = M @ [x, y, 1]
    warped = opencv_warp_affine(x, forward[None])
    dx, dy = (
        (ndimage.gaussian_filter(f[0], sigma, mode="reflect", truncate=3) * alpha).astype(
            np.float32
        )
        for f in field
    )
    rows, cols = np.mgrid[0:32, 0:32]
    ref = map_coordinates_pre16_reflect(warped, (rows + dy)[None], (cols + dx)[None])
    np.testing.assert_allclose(out, np.clip(ref, 0, 1), atol=1e-6)


# ------------------------------------------------------------------ OpenCV ports (spatter)


def test_opencv_canny_on_a_step_edge():
    img = np.zeros((1, 12, 12), np.uint8)
    img[:, :, 6:] = 200  # Sobel |dx| = 800 at columns 5 and 6; the tie goes to column 5
    edges = opencv_canny(img, 50, 150)
    expect = np.zeros((12, 12), bool)
    expect[:, 5] = True
    assert np.array_equal(edges[0], expect)
    assert not opencv_canny(img // 40, 50, 150).any()  # |dx| = 4 * 5 = 20 < low


def test_equalize_hist_two_levels_and_constant():
    img = np.full((2, 4, 4), 10, np.uint8)
    img[0, :2] = 20
    out = equalize_hist(img)
    assert set(np.unique(out[0])) == {0, 255}
    assert np.array_equal(out[1], img[1])  # a one-level image is left as it is


def test_chamfer_distance_steps():
    edges = np.zeros((1, 7, 7), bool)
    edges[0, 3, 3] = True
    d = chamfer_distance(edges)[0]
    assert d[3, 3] == 0 and d[3, 4] == 1 and d[3, 5] == 2
    assert d[4, 4] == np.float32(1.4) and d[5, 5] == np.float32(1.4) + np.float32(1.4)
    assert d[5, 4] == np.float32(2.1969)
    assert chamfer_distance(np.zeros((1, 4, 4), bool)).min() > 20  # no edges: far away


# ------------------------------------------------------------------ frost photos


def test_frost_uses_the_first_five_photos_from_the_env_dir(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    photos = []
    for k in range(6):  # shrunk x0.2 by sampling pixel 5 i + 2: (200, 210) -> (40, 42)
        photo = rng.integers(0, 256, (200, 210, 3), dtype=np.uint8)
        Image.fromarray(photo).save(tmp_path / f"frost{k + 1}.png")
        photos.append(photo[2::5, 2::5].astype(np.float32) / 255)
    monkeypatch.setenv(ENV_FROST_DIR, str(tmp_path))
    black = np.zeros((12, 32, 32, 3), np.float32)
    texture = run("frost", black, 1, seed=3) / np.float32(0.2)  # 1 * 0 + 0.2 * crop
    # every window a crop may come from: tops 0..7, lefts 0..9 (the original's randint bounds)
    windows = np.stack(
        [np.lib.stride_tricks.sliding_window_view(p, (32, 32), axis=(0, 1)) for p in photos]
    )[:, :8, :10]  # (photo, top, left, 3, 32, 32)
    windows = np.moveaxis(windows, 3, -1)
    used = set()
    for crop in texture:
        hits = np.argwhere(np.abs(windows - crop).max(axis=(-3, -2, -1)) < 1e-5)
        assert len(hits) == 1
        used.add(int(hits[0, 0]))
    assert 5 not in used and len(used) > 1


def test_frost_env_dir_without_photos_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_FROST_DIR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"frost1\.png"):
        run("frost", smooth_images(1), 1)
