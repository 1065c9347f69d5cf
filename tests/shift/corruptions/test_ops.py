"""The shared corruption primitives: noise, blurs, the ImageMagick motion kernel, plasma, HSV."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from bnn_shift.shift.corruptions import _ops


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _images(n: int = 4, h: int = 12, w: int = 10, c: int = 1, seed: int = 0) -> np.ndarray:
    return _rng(seed).random((n, h, w, c)).astype(np.float32)


def test_shot_noise_moments_and_levels() -> None:
    x = np.full((200, 25, 20, 1), 0.3, np.float32)
    y = _ops.shot(x, 60, _rng())
    assert y.shape == x.shape and y.dtype == np.float32
    # Poisson(18) / 60: mean 0.3, variance 0.3 / 60; 100k draws -> tolerances of ~5 standard errors
    assert abs(y.mean() - 0.3) < 5 * math.sqrt(0.3 / 60 / y.size)
    assert abs(y.var() / (0.3 / 60) - 1) < 5 * math.sqrt(2 / y.size)
    levels = np.unique(_ops.shot(x, 3, _rng()))  # Poisson(0.9) / 3, clipped at 1
    np.testing.assert_allclose(levels, [0, 1 / 3, 2 / 3, 1], atol=1e-7)
    np.testing.assert_array_equal(_ops.shot(x, 60, _rng(1)), _ops.shot(x, 60, _rng(1)))
    with pytest.raises(ValueError, match="c must be > 0"):
        _ops.shot(x, 0, _rng())


def test_impulse_flips_the_given_fraction_to_black_or_white() -> None:
    x = np.full((100, 20, 20, 3), 0.5, np.float32)  # 120k values
    y = _ops.impulse(x, 0.2, _rng())
    changed = y != 0.5
    assert set(np.unique(y[changed])) == {0.0, 1.0}
    se = math.sqrt(0.2 * 0.8 / x.size)
    assert abs(changed.mean() - 0.2) < 5 * se
    assert abs((y == 0).mean() - 0.1) < 5 * se and abs((y == 1).mean() - 0.1) < 5 * se
    np.testing.assert_array_equal(_ops.impulse(x, 0.0, _rng()), x)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _ops.impulse(x, 1.5, _rng())


def test_gaussian_blur_of_a_delta_is_the_kernel_and_axes_are_separate() -> None:
    x = np.zeros((1, 21, 21, 2), np.float32)
    x[0, 10, 10, 0] = 1.0  # channel 1 stays empty
    y = _ops.gaussian_blur(x, 1.5)
    r = np.arange(-6, 7)  # scipy truncates at 4 sigma: radius int(4 * 1.5 + 0.5) = 6
    g = np.exp(-(r**2) / (2 * 1.5**2))
    g /= g.sum()
    np.testing.assert_allclose(y[0, 4:17, 4:17, 0], np.outer(g, g), atol=1e-7)
    assert y[..., 1].max() == 0.0
    rows_only = _ops.gaussian_blur(x, (1.5, 0.0))
    assert np.count_nonzero(rows_only[0, :, :, 0].sum(axis=0)) == 1  # stays in column 10
    np.testing.assert_allclose(rows_only[0, 4:17, 10, 0], g, atol=1e-7)
    with pytest.raises(ValueError, match="sigma"):
        _ops.gaussian_blur(x, (1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match=r"\(n, H, W, C\)"):
        _ops.gaussian_blur(x[0], 1.0)


def _glass_reference(img: np.ndarray, sigma, d: int, iterations: int, rng, release_line: bool):
    """One image, pixel by pixel: blur, truncate to 8 bits, swap in raster order, blur.

    `release_line` runs the generators' own swap line, `x[h, w], x[h', w'] = x[h', w'],
    x[h, w]`, on the `(H, W, C)` array: numpy views, so it copies (CIFAR-10-C). Otherwise a
    true swap (MNIST-C's 2-D images)."""
    blur = lambda a: ndimage.gaussian_filter(a, (*sigma, 0), mode="nearest")
    y = _ops.truncate_8bit(blur(img.astype(np.float64))).astype(np.float64)
    h, w = img.shape[:2]
    for _ in range(iterations):
        for r in range(h - d, d, -1):
            for c in range(w - d, d, -1):
                dr, dc = rng.integers(-d, d, size=(2, 1))[:, 0]
                if release_line:
                    y[r, c], y[r + dr, c + dc] = y[r + dr, c + dc], y[r, c]
                else:
                    y[[r, r + dr], [c, c + dc]] = y[[r + dr, r], [c + dc, c]]
    return np.clip(blur(y), 0, 1)


@pytest.mark.parametrize("copy", [False, True], ids=["swap", "release-copy"])
@pytest.mark.parametrize(("sigma", "d", "iterations"), [((0.7, 0.7), 1, 2), ((1.0, 0.0), 3, 1)])
def test_glass_blur_matches_a_pixel_loop(sigma, d: int, iterations: int, copy: bool) -> None:
    x = _images(1, 14, 13, 3, seed=3)
    y = _ops.glass_blur(x, sigma, d, iterations, _rng(5), copy=copy)
    ref = _glass_reference(x[0], sigma, d, iterations, _rng(5), release_line=copy)
    np.testing.assert_allclose(y[0], ref, atol=1e-6)
    other = _ops.glass_blur(x, sigma, d, iterations, _rng(5), copy=not copy)
    assert not np.allclose(y, other, atol=1e-3), "copy and swap must differ on 3 channels"


def test_truncate_8bit_takes_the_level_below() -> None:
    k = np.arange(256, dtype=np.float64)
    on_grid = (k / 255).astype(np.float32)
    np.testing.assert_array_equal(_ops.truncate_8bit(on_grid) * 255, k)  # exact levels stay
    just_below = ((k[1:] - 1e-5) / 255).astype(np.float32)  # float32 round-off of a level
    np.testing.assert_array_equal(np.rint(_ops.truncate_8bit(just_below) * 255), k[1:])
    np.testing.assert_array_equal(np.rint(_ops.truncate_8bit((k + 0.99) / 255) * 255), k)
    assert _ops.truncate_8bit(np.array([-0.5, 1.5])).tolist() == [0.0, 1.0]


def test_glass_blur_batch_properties() -> None:
    x = _images(6, 16, 16, 3)
    y = _ops.glass_blur(x, 0.5, 2, 2, _rng(1), swap_prob=0.5)
    assert y.shape == x.shape and y.dtype == np.float32 and 0 <= y.min() and y.max() <= 1
    np.testing.assert_array_equal(y, _ops.glass_blur(x, 0.5, 2, 2, _rng(1), swap_prob=0.5))
    assert not np.array_equal(y, _ops.glass_blur(x, 0.5, 2, 2, _rng(2), swap_prob=0.5))
    # no swaps: blur, 8-bit truncation, blur
    quantised = _ops.truncate_8bit(_ops.gaussian_blur(x, 0.5))
    expected = _ops.gaussian_blur(quantised, 0.5)
    np.testing.assert_allclose(_ops.glass_blur(x, 0.5, 2, 0, _rng()), expected, atol=1e-6)
    np.testing.assert_allclose(
        _ops.glass_blur(x, 0.5, 2, 3, _rng(), swap_prob=0.0), expected, atol=1e-6
    )
    with pytest.raises(ValueError, match="max_delta"):
        _ops.glass_blur(x, 0.5, 0, 1, _rng())


@pytest.mark.parametrize("angle", [0.0, 17.0, 45.0, -30.0, 90.0, 180.0])
def test_motion_kernel_is_a_one_sided_gaussian_line(angle: float) -> None:
    taps = _ops.motion_blur_kernel(4, 1.5, angle)
    assert taps.shape == (9, 3)  # 2 * ceil(4) + 1
    d_row, d_col, weight = taps.T
    assert weight.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(weight / weight[0], np.exp(-(np.arange(9) ** 2) / 4.5))
    a = math.radians(angle)
    # tap i is the point i * (sin a, cos a) rounded, so within half a pixel per axis
    np.testing.assert_array_less(np.abs(d_row - np.arange(9) * math.sin(a)), 0.5 + 1e-9)
    np.testing.assert_array_less(np.abs(d_col - np.arange(9) * math.cos(a)), 0.5 + 1e-9)
    assert d_row[0] == d_col[0] == 0


def test_motion_kernel_axis_cases() -> None:
    taps = _ops.motion_blur_kernel(2, 1.0, 0.0)
    np.testing.assert_array_equal(taps[:, :2], [[0, 0], [0, 1], [0, 2], [0, 3], [0, 4]])
    taps = _ops.motion_blur_kernel(2, 1.0, 90.0)
    np.testing.assert_array_equal(taps[:, :2], [[0, 0], [1, 0], [2, 0], [3, 0], [4, 0]])
    taps = _ops.motion_blur_kernel(1, 1.0, 45.0)
    np.testing.assert_array_equal(taps[:, 0], taps[:, 1])
    with pytest.raises(ValueError, match="radius > 0"):
        _ops.motion_blur_kernel(0, 1.0, 0.0)


def test_motion_blur_smears_a_point_along_the_angle() -> None:
    x = np.zeros((2, 9, 15, 1), np.float32)
    x[:, 4, 10] = 1.0
    y = _ops.motion_blur(x, 3, 2.0, np.array([0.0, 90.0]))
    weight = _ops.motion_blur_kernel(3, 2.0, 0.0)[:, 2]
    # output (r, c) reads the input at (r, c + i) for angle 0, at (r + i, c) for 90 degrees
    np.testing.assert_allclose(y[0, 4, 10 - np.arange(7), 0], weight, rtol=1e-6)
    assert y[0].sum() == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(y[1, 4 - np.arange(5), 10, 0], weight[:5], rtol=1e-6)
    flat = np.full((1, 6, 6, 2), 0.25, np.float32)  # edges repeat: a constant image stays put
    np.testing.assert_allclose(_ops.motion_blur(flat, 5, 3.0, [33.0]), flat, rtol=1e-6)


def test_plasma_range_determinism_and_crop() -> None:
    maps = _ops.plasma_fractal(3, 64, 2.0, _rng(4))
    assert maps.shape == (3, 64, 64) and maps.dtype == np.float32
    np.testing.assert_allclose(maps.min(axis=(1, 2)), 0.0)
    np.testing.assert_allclose(maps.max(axis=(1, 2)), 1.0)
    np.testing.assert_array_equal(maps, _ops.plasma_fractal(3, 64, 2.0, _rng(4)))
    crop = _ops.plasma_fractal(3, 64, 2.0, _rng(4), crop=13)
    np.testing.assert_array_equal(crop, maps[:, :13, :13])
    with pytest.raises(ValueError, match="power of two"):
        _ops.plasma_fractal(1, 48, 2.0, _rng())


def test_plasma_on_a_2x2_map_by_hand() -> None:
    # corner 0; centre = U(-1e4, 1e4); both edge midpoints = centre / 2 + their own draw
    rng = _rng(9)  # one 16-bit draw per pass: centres, then top and left edge midpoints
    draws = [rng.integers(-32767, 32767, (1, 1, 1), np.int16, True).item() for _ in "ctl"]
    noise = np.array(draws) * (1e4 / 32767)
    grid = np.array([[0.0, noise[0] / 2 + noise[1]], [noise[0] / 2 + noise[2], noise[0]]])
    grid = (grid - grid.min()) / (grid.max() - grid.min())
    np.testing.assert_allclose(_ops.plasma_fractal(1, 2, 3.0, _rng(9))[0], grid, atol=1e-5)


def test_plasma_decay_controls_roughness() -> None:
    rough = lambda m: np.abs(np.diff(m, axis=2)).mean()
    smooth = _ops.plasma_fractal(8, 64, 3.0, _rng(1))  # fine detail fades fast
    jagged = _ops.plasma_fractal(8, 64, 1.2, _rng(1))
    assert rough(smooth) < 0.5 * rough(jagged)


def test_hsv_known_colours_and_round_trip() -> None:
    rgb = np.array(
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0.5, 0.5, 0.5], [0, 0, 0], [0.2, 0.4, 0.4]]
    )
    hsv = np.array(
        [
            [0, 1, 1],
            [1 / 3, 1, 1],
            [2 / 3, 1, 1],
            [1 / 6, 1, 1],
            [0, 0, 0.5],
            [0, 0, 0],
            [0.5, 0.5, 0.4],
        ]
    )
    np.testing.assert_allclose(_ops.rgb_to_hsv(rgb), hsv, atol=1e-12)
    np.testing.assert_allclose(_ops.hsv_to_rgb(hsv), rgb, atol=1e-12)
    colours = _rng(2).random((50, 40, 3))
    np.testing.assert_allclose(_ops.hsv_to_rgb(_ops.rgb_to_hsv(colours)), colours, atol=1e-12)
    h = _ops.rgb_to_hsv(colours.astype(np.float32))
    assert h.dtype == np.float32 and h[..., 0].min() >= 0 and h[..., 0].max() < 1
    with pytest.raises(ValueError, match="3 channels"):
        _ops.rgb_to_hsv(colours[..., :2])
    with pytest.raises(ValueError, match="3 channels"):
        _ops.hsv_to_rgb(colours[..., :1])
