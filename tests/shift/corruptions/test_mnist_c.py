"""MNIST-C: the 15 corruptions, their release parameters, the registry API and the Shift wrapper."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import ndimage

from bnn_shift.data import Dataset
from bnn_shift.shift.corruptions import MNIST_C, corrupt, corruption_shifts, mnist_c
from bnn_shift.shift.noise import Shift

NAMES = list(MNIST_C)
LEVELLED = [n for n in NAMES if len(MNIST_C[n].severities) == 5]
DETERMINISTIC = {"stripe", "canny_edges", "brightness", "scale"}


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """32 MNIST test digits in [0, 1] (n, 28, 28); scikit-learn's digits upsampled without MNIST."""
    from bnn_shift.data import DataNotFoundError, load_mnist_uint8

    try:
        raw = load_mnist_uint8(download=False, progress=False)["test_images"][:32]
        return (raw / 255.0).astype(np.float32)
    except DataNotFoundError:
        from sklearn.datasets import load_digits

        small = load_digits().images[:32] / 16.0  # (32, 8, 8)
        big = ndimage.zoom(small, (1, 20 / 8, 20 / 8), order=1)
        return np.clip(np.pad(big, ((0, 0), (4, 4), (4, 4))), 0, 1).astype(np.float32)


def test_published_order_levels_and_defaults() -> None:
    assert NAMES == [
        "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate",
        "brightness", "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag",
        "canny_edges",
    ]  # fmt: skip
    release = {  # REFERENCE.md section 5.1: (default severity, its parameter)
        "shot_noise": (5, 3),
        "impulse_noise": (4, 0.17),
        "glass_blur": (1, (0.7, 1, 2)),
        "motion_blur": (1, (10, 3)),
        "shear": (2, 0.4),
        "scale": (3, 1 / 0.7),
        "rotate": (2, 0.4),
        "brightness": (5, 0.5),
        "translate": (3, 3),
        "fog": (5, (3.0, 1.4)),
        "spatter": (4, (0.65, 0.3, 1, 0.65, 1.5)),
    }
    for name, entry in MNIST_C.items():
        assert entry.name == name and entry.benchmark == "mnist-c"
        if name in release:
            level, value = release[name]
            assert entry.severities == (1, 2, 3, 4, 5) and entry.default_severity == level
            assert mnist_c.LEVELS[name][level - 1] == pytest.approx(value)
        else:
            assert entry.severities == (1,) and entry.default_severity == 1


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_range_and_seeding(name: str, digits: np.ndarray) -> None:
    x = digits[:8]
    y = corrupt(x, name, seed=3)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.isfinite(y).all() and y.min() >= 0.0 and y.max() <= 1.0
    assert not np.allclose(y, x, atol=1e-3)
    np.testing.assert_array_equal(y, corrupt(x.astype(np.float64), name, seed=3))
    with_channel = corrupt(x[..., None], name, seed=3)
    np.testing.assert_array_equal(with_channel[..., 0], y)
    if name in DETERMINISTIC:
        np.testing.assert_array_equal(y, corrupt(x, name, seed=4))
    else:
        assert not np.array_equal(y, corrupt(x, name, seed=4))


@pytest.mark.parametrize("name", sorted(set(LEVELLED) - {"fog", "spatter"}))
def test_distance_from_clean_grows_with_severity(name: str, digits: np.ndarray) -> None:
    dist = [np.abs(corrupt(digits, name, s) - digits).mean() for s in range(1, 6)]
    assert np.all(np.diff(dist) > 0), dist


def test_fog_keeps_1_over_1_plus_s_of_the_digit(digits: np.ndarray) -> None:
    # y = (x + s * plasma) * max / (max + s) with max = 1 and the plasma independent of x, so
    # mean(y | ink) - mean(y | background) = 1 / (1 + s): the fog levels' s = 1.5, 2, 2.5, 2.5, 3
    x = digits.copy()
    x[x < 0.5], x[x >= 0.5] = 0.0, 1.0
    for level, (strength, _) in enumerate(mnist_c.LEVELS["fog"], start=1):
        y = corrupt(x, "fog", level, seed=1)
        plasma = (y * (1 + strength) - x) / strength  # the fractal crop, in [0, 1]
        assert plasma.min() >= -1e-6 and plasma.max() <= 1 + 1e-6
        contrast = y[x == 1].mean() - y[x == 0].mean()
        assert contrast == pytest.approx(1 / (1 + strength), abs=0.03)
    assert corrupt(np.zeros((2, 28, 28)), "fog").max() == 0.0  # max 0: all fog scaled away


def test_spatter_paints_mud_over_blurred_blobs(digits: np.ndarray) -> None:
    y = corrupt(digits, "spatter", seed=2)
    mud = 63 / 255
    changed = np.abs(y - digits) > 1e-6
    # y = x (1 - m) + mud m with m = 0 or m in [0.8, 1]: at least 80 % of the way to mud
    assert changed.mean() > 0.01
    assert np.all(np.abs(y - mud)[changed] <= 0.2 * np.abs(digits - mud)[changed] + 1e-6)
    covered = [np.abs(corrupt(digits, "spatter", s) - digits).mean() for s in (1, 2, 3)]
    assert covered[0] < covered[1] < covered[2]  # same mask blur, smaller liquid blur


def test_stripe_inverts_the_outer_quarters_of_a_ramp() -> None:
    ramp = np.tile(np.linspace(0, 1, 28, dtype=np.float32), (2, 28, 1))  # (2, 28, 28)
    y = corrupt(ramp, "stripe")
    np.testing.assert_allclose(y[:, :, :7], 1 - ramp[:, :, :7])
    np.testing.assert_array_equal(y[:, :, 7:21], ramp[:, :, 7:21])
    np.testing.assert_allclose(y[:, :, 21:], 1 - ramp[:, :, 21:])


def test_translate_moves_each_digit_by_3_px_diagonally(digits: np.ndarray) -> None:
    x = digits[:12]
    y = corrupt(x, "translate", seed=5)
    padded = np.pad(x, ((0, 0), (3, 3), (3, 3)))
    seen = set()
    for i in range(len(x)):
        # the inverse map adds (dx, dy): out[r, c] = in[r + dy, c + dx], zero outside
        moves = [
            (dx, dy)
            for dx in (-3, 3)
            for dy in (-3, 3)
            if np.array_equal(y[i], padded[i, 3 + dy : 31 + dy, 3 + dx : 31 + dx])
        ]
        assert len(moves) == 1
        seen.add(moves[0])
    assert len(seen) > 1  # the signs are random


def test_warp_by_a_quarter_turn_is_rot90(digits: np.ndarray) -> None:
    x = digits[:3, :, :, None]
    quarter = np.broadcast_to(np.array([[0.0, -1.0], [1.0, 0.0]]), (3, 2, 2))
    y = mnist_c._centred_warp(x, quarter)  # out[r, c] = x[c, 27 - r]: counter-clockwise
    np.testing.assert_allclose(y, np.rot90(x, k=1, axes=(1, 2)), atol=1e-6)


def test_warp_paths_agree_on_arbitrary_maps() -> None:
    from bnn_shift.shift.corruptions import _warp

    rng = np.random.default_rng(0)
    x = rng.random((5, 11, 9, 2)).astype(np.float32)
    a = np.eye(2) + rng.normal(0, 0.3, (5, 2, 2))
    t = rng.normal(0, 2, (5, 2))
    per_pixel = _warp._by_pixel(x, a, t)
    per_map = _warp._by_matrix(x, a, t, np.arange(5))
    np.testing.assert_allclose(per_map, per_pixel, atol=1e-6)
    np.testing.assert_allclose(_warp.affine_warp(x, a, t), np.clip(per_pixel, 0, 1), atol=1e-6)
    shifted = _warp.affine_warp(x, np.eye(2), [2.0, -1.0])  # out[r, c] = x[r - 1, c + 2]
    np.testing.assert_array_equal(shifted[:, 1:, :-2], x[:, :-1, 2:])
    assert shifted[:, 0].max() == 0 and shifted[:, :, -2:].max() == 0


def test_rotate_shear_scale_use_the_release_maps(digits: np.ndarray) -> None:
    x = digits[:6, :, :, None]
    n = len(x)
    c, s = math.cos(0.4), math.sin(0.4)
    candidates = {
        "rotate": [np.array([[c, -g * s], [g * s, c]]) for g in (1, -1)],
        "shear": [np.array([[1, -math.sin(g * 0.4)], [0, math.cos(g * 0.4)]]) for g in (1, -1)],
        "scale": [np.eye(2) / 0.7],
    }
    for name, maps in candidates.items():
        y = corrupt(x, name, seed=7)
        warped = [mnist_c._centred_warp(x, np.broadcast_to(a, (n, 2, 2))) for a in maps]
        for i in range(n):
            assert any(np.allclose(y[i], w[i], atol=1e-6) for w in warped), (name, i)
    # scaling by 0.7 keeps about 0.49 of the ink
    ratio = corrupt(x, "scale").sum() / x.sum()
    assert 0.42 < ratio < 0.56


def test_brightness_and_shot_noise_values(digits: np.ndarray) -> None:
    np.testing.assert_allclose(corrupt(digits, "brightness"), np.clip(digits + 0.5, 0, 1))
    rgb = np.stack([digits, digits * 0.5, digits * 0.25], axis=-1)[:4]
    bright = corrupt(rgb, "brightness", 2)  # HSV value + 0.2 keeps hue and saturation
    from bnn_shift.shift.corruptions._ops import rgb_to_hsv

    hsv, hsv_bright = rgb_to_hsv(rgb), rgb_to_hsv(bright)
    ink = rgb.max(axis=-1) > 0.1
    np.testing.assert_allclose(hsv_bright[..., 2], np.clip(hsv[..., 2] + 0.2, 0, 1), atol=1e-6)
    np.testing.assert_allclose(hsv_bright[ink][:, :2], hsv[ink][:, :2], atol=1e-5)
    shot = corrupt(digits, "shot_noise")  # c = 3: Poisson counts / 3, clipped
    np.testing.assert_allclose(np.unique(shot), [0, 1 / 3, 2 / 3, 1], atol=1e-7)
    motion = corrupt(digits, "motion_blur") * 255  # 8-bit output, as ImageMagick's PNG
    np.testing.assert_allclose(motion, np.round(motion), atol=1e-3)


def _reference_line(c0: float, r0: float, c1: float, r1: float) -> np.ndarray:
    """The generator's line on 28 x 28, written pixel by pixel."""
    out = np.zeros((28, 28))
    if c1 == c0:
        return out
    for row in range(28):
        for col in range(math.floor(c0), min(math.ceil(c1), 28)):
            d = min(abs(row - ((r1 - r0) / (c1 - c0) * (col - c0) + r0)), 2.3 - 1e-10)
            out[row, col] = min(max(math.log(1 - d / 2.3) + 1, 0.0), 1.0)
    return out


def test_dotted_line_matches_the_pixel_formula(digits: np.ndarray) -> None:
    x = digits[:2, :, :, None]
    y = mnist_c.draw_dotted_line(x, np.array([3, 20]), np.array([20, 20]))
    for i, (r0, r1) in enumerate([(3, 20), (20, 20)]):
        line = _reference_line(0, r0, 27, r1)
        line[:, [c for c in range(28) if (c // 2) % 2 == 0]] = 0  # blocks 0-1, 4-5, ..., 24-25
        np.testing.assert_allclose(y[i, :, :, 0], np.clip(x[i, :, :, 0] + line, 0, 1), atol=1e-6)
    assert np.array_equal(y[:, :, 27], x[:, :, 27])  # the last column is never drawn


def _reference_zigzag(r0: int, r1: int) -> list[tuple[float, float]]:
    """Vertices of the generator's zigzag from column 2 to 25 (a = b = 2)."""
    theta = math.atan((r1 - r0) / 23)
    d = 23 / math.cos(theta)
    pts = [(0.0, 0.0)]
    i = 0
    while (2 * i + 1) * 2 <= d:
        pts.append(((2 * i + 1) * 2.0, 2.0 * (-1) ** i))
        i += 1
    whole = 4 * math.floor(d / 4)
    if d != whole:
        pts.append((d, pts[-1][1] / (2 * (d - whole))))
    rot = lambda c, r: (
        c * math.cos(theta) - r * math.sin(theta) + 2,
        c * math.sin(theta) + r * math.cos(theta) + r0,
    )
    return [rot(c, r) for c, r in pts]


@pytest.mark.parametrize(("r0", "r1"), [(0, -5), (10, 14), (26, 26), (13, 8)])
def test_zigzag_matches_segment_by_segment_drawing(r0: int, r1: int, digits: np.ndarray) -> None:
    x = digits[:1, :, :, None]
    expected = x[0, :, :, 0].astype(np.float64)
    pts = _reference_zigzag(r0, r1)
    for (c0, q0), (c1, q1) in itertools.pairwise(pts):
        expected = np.clip(expected + _reference_line(c0, q0, c1, q1), 0, 1)
    y = mnist_c.draw_zigzag(x, np.array([r0]), np.array([r1]))
    np.testing.assert_allclose(y[0, :, :, 0], expected, atol=1e-6)


def test_canny_outlines_a_square() -> None:
    x = np.zeros((1, 28, 28), np.float32)
    x[0, 8:20, 8:20] = 1.0
    edges = corrupt(x, "canny_edges")[0]
    assert set(np.unique(edges)) == {0.0, 1.0}
    rows, cols = np.nonzero(edges)
    assert rows.min() >= 6 and rows.max() <= 21 and cols.min() >= 6 and cols.max() <= 21
    assert edges[11:17, 11:17].sum() == 0  # nothing inside
    for side in (edges[7:9, 10:18], edges[19:21, 10:18], edges[10:18, 7:9], edges[10:18, 19:21]):
        assert side.sum(axis=side.shape.index(2)).min() == 1  # one thin line along each side
    assert corrupt(np.full((1, 28, 28), 0.4), "canny_edges").max() == 0.0


def test_canny_matches_scikit_image(digits: np.ndarray) -> None:
    feature = pytest.importorskip("skimage.feature")
    expected = np.stack([feature.canny(d.astype(np.float64)) for d in digits])
    np.testing.assert_array_equal(corrupt(digits, "canny_edges").astype(bool), expected)


def test_corrupt_rejects_bad_input(digits: np.ndarray) -> None:
    with pytest.raises(ValueError, match="valid names: identity, shot_noise, impulse_noise"):
        corrupt(digits, "snow")
    with pytest.raises(ValueError, match=r"severities \(1, 2, 3, 4, 5\); got 6"):
        corrupt(digits, "fog", 6)
    with pytest.raises(ValueError, match=r"severities \(1,\); got 2"):
        corrupt(digits, "stripe", 2)
    with pytest.raises(ValueError, match=r"uint8 \(0\.\.255\) or floats in \[0, 1\]"):
        corrupt((digits * 255).astype(np.int32), "fog")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        corrupt(digits * 255, "fog")
    with pytest.raises(ValueError, match=r"\(n, H, W\)"):
        corrupt(digits[0, 0], "fog")
    with pytest.raises(ValueError, match="unknown benchmark"):
        corrupt(digits, "fog", benchmark="imagenet-c")
    with pytest.raises(ValueError, match="seed"):
        corrupt(digits, "fog", seed=-1)
    assert corrupt(digits[:0], "zigzag").shape == (0, 28, 28)


def _toy_dataset(digits: np.ndarray) -> Dataset:
    x = ((digits[:, :, :, None] - 0.13) / 0.31).astype(np.float32)
    y = np.arange(len(digits)) % 10
    return Dataset("toy", x, y, x[:16], y[:16], 10, mean=0.13, std=0.31)


def test_corruption_shifts_act_in_pixel_space(digits: np.ndarray) -> None:
    data = _toy_dataset(digits)
    shifts = corruption_shifts(data)
    assert [s.name for s in shifts] == NAMES and all(isinstance(s, Shift) for s in shifts)
    assert [s.severity for s in shifts] == [MNIST_C[n].default_severity for n in NAMES]
    shift = corruption_shifts(data, names=["zigzag"], seed=4)[0]
    raw = np.clip(data.denormalize(data.x_test), 0, 1)
    expected = data.normalize(corrupt(raw, "zigzag", seed=4))
    np.testing.assert_allclose(shift.apply(data.x_test), expected, atol=1e-6)
    flat = shift.apply(data.flat("test"))
    np.testing.assert_allclose(flat, expected.reshape(16, -1), atol=1e-6)
    levels = corruption_shifts(data, names=["fog", "stripe"], severities="all")
    assert [(s.name, s.severity) for s in levels] == [("fog", k) for k in range(1, 6)] + [
        ("stripe", 1)
    ]
    assert [s.severity for s in corruption_shifts(data, names=["fog"], severities=[2, 4])] == [
        2,
        4,
    ]
    with pytest.raises(ValueError, match="severities"):
        corruption_shifts(data, names=["stripe"], severities=[3])
    with pytest.raises(ValueError, match="not \\[0, 1\\]"):
        shift.apply(data.x_test * 10)
    with pytest.raises(ValueError, match="names is empty"):
        corruption_shifts(data, names=[])
