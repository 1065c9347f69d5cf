"""Where the generators must do what the released MNIST-C / CIFAR-10-C did, bit for bit.

Small hand-made inputs pin each release behaviour that differs from the obvious code: the
CIFAR glass blur's copying "swap", ImageMagick's truncation in snow and motion blur, the
elastic transform's OpenCV 1/32-px grid and pre-1.6 SciPy border, spatter's wrapping 8-bit
cast, each release's uint8 storage, uint8 input, MNIST-C's identity set and Python 3 division.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from bnn_shift.data import Dataset
from bnn_shift.shift.corruptions import (
    MNIST_C,
    RELEASES,
    _ops,
    _spatter,
    corrupt,
    corruption_shifts,
    get_corruption,
    mnist_c,
    to_uint8,
)
from bnn_shift.shift.corruptions import cifar10_c as c10
from bnn_shift.shift.corruptions._resample import (
    _pre16_reflect,
    map_coordinates_pre16_reflect,
    opencv_warp_affine,
)


class _Stub:
    """A Generator stand-in returning prepared arrays, method by method, in order."""

    def __init__(self, **draws: list[np.ndarray]) -> None:
        self.draws = {k: list(v) for k, v in draws.items()}

    def _next(self, kind: str, size) -> np.ndarray:
        out = np.asarray(self.draws[kind].pop(0))
        assert out.shape == np.empty(size).shape, (kind, out.shape, size)
        return out

    def integers(self, low, high, size):
        return self._next("integers", size)

    def normal(self, loc, scale, size):
        return self._next("normal", size)

    def uniform(self, low, high, size):
        return self._next("uniform", size)


def _on_grid(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, shape) / 255).astype(np.float32)


# ------------------------------------------------------------------ glass blur


def test_cifar_glass_blur_copies_where_the_release_did() -> None:
    """Severity 1 (sigma 0.05: both blurs are the identity, d = 1) on a 4 x 4 RGB image: the
    visits are (3, 3), (3, 2), (2, 3), (2, 2); only the first moves, by (-1, -1). The release's
    `x[h, w], x[h', w'] = x[h', w'], x[h, w]` on 3-channel views copies (2, 2) over (3, 3)."""
    x = _on_grid((1, 4, 4, 3))
    offsets = [np.array([[-1], [-1]])] + [np.zeros((2, 1), np.int64)] * 3
    y = c10.glass_blur(x, 1, _Stub(integers=offsets))
    expected = x.copy()
    expected[0, 3, 3] = x[0, 2, 2]  # (2, 2) keeps its value: a copy, not a swap
    np.testing.assert_array_equal(y, expected)
    swapped = _ops.glass_blur(x, 0.05, 1, 1, _Stub(integers=offsets))  # MNIST-C's true swap
    assert np.array_equal(swapped[0, 2, 2], x[0, 3, 3])


def test_mnist_glass_blur_truly_swaps() -> None:
    x = _on_grid((1, 28, 28, 1))
    rng = np.random.default_rng(3)
    out = mnist_c.glass_blur(x, 1, rng)
    sigma, d, iterations = mnist_c.LEVELS["glass_blur"][0]
    ref = _ops.glass_blur(
        x, (sigma, 0.0), d, iterations, np.random.default_rng(3), swap_prob=0.5, copy=False
    )
    np.testing.assert_array_equal(out, ref)


# ------------------------------------------------------------------ ImageMagick truncation


def _point(h: int, w: int, r: int, c: int, channels: int = 1) -> np.ndarray:
    x = np.zeros((1, h, w, channels), np.float32)
    x[0, r, c] = 1.0
    return x


@pytest.mark.parametrize(("module", "size"), [(mnist_c, 28), (c10, 32)], ids=["mnist", "cifar"])
def test_motion_blur_truncates_to_8_bits(module, size: int) -> None:
    """A point smeared along angle 0: output (r, c - i) holds weight i, truncated."""
    x = _point(size, size, 10, size - 3)
    y = module.motion_blur(x, 1, _Stub(uniform=[np.zeros(1)]))
    radius, sigma = module.LEVELS["motion_blur"][0]
    weights = _ops.motion_blur_kernel(radius, sigma, 0.0)[:, 2]
    taps = weights[: size - 3 + 1]  # those that stay inside the image
    got = y[0, 10, size - 3 - np.arange(len(taps)), 0] * 255
    np.testing.assert_allclose(got, np.floor(taps * 255), atol=1e-4)
    assert not np.allclose(got, np.round(taps * 255), atol=1e-4), "rounding must differ here"


def test_snow_layer_is_truncated_like_imagemagick() -> None:
    """Severity 1 on black: one flake at (5, 10), smeared straight down (angle -90); the image
    becomes 0.95 * 0 + 0.05 * 0.5, plus the layer and its 180-degree rotation."""
    layer = np.zeros((1, 32, 32, 1))
    layer[0, 5, 10] = 1.0
    x = np.zeros((1, 32, 32, 3), np.float32)
    y = c10.snow(x, 1, _Stub(normal=[layer], uniform=[np.array([-90.0])]))
    radius, sigma = c10.LEVELS["snow"][0][4:6]
    weights = _ops.motion_blur_kernel(radius, sigma, 0.0)[:, 2]
    smear = np.zeros((32, 32))
    smear[5 + np.arange(len(weights)), 10] = weights  # rows 5 .. 21
    for quantise, same in ((np.floor, True), (np.round, False)):
        flakes = quantise(smear * 255) / 255
        expected = np.clip(0.025 + flakes + np.rot90(flakes, 2), 0, 1)[None, :, :, None]
        assert np.allclose(y, np.broadcast_to(expected, y.shape), atol=1e-6) == same


# ------------------------------------------------------------------ elastic transform


def test_opencv_warp_uses_the_1_32_pixel_grid() -> None:
    """Values from OpenCV 4.10's warpAffine (float32, BORDER_REFLECT_101): a shift of 0.3 px
    samples at 10/32 = 0.3125, a shift of 1/64 px rounds up to 1/32."""
    x = np.zeros((1, 1, 64, 1), np.float32)
    x[0, 0, 1] = 1.0
    for shift, expected in ((0.3, [0.3125, 0.6875, 0.0]), (0.015625, [0.03125, 0.96875, 0.0])):
        forward = np.array([[[1.0, 0.0, -shift], [0.0, 1.0, 0.0]]])  # output x reads x + shift
        np.testing.assert_array_equal(opencv_warp_affine(x, forward)[0, 0, :3, 0], expected)


def test_opencv_warp_is_bilinear_at_the_rounded_coordinates() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((3, 12, 10, 2)).astype(np.float32)
    forward = np.array([[1.05, 0.1, -0.7], [-0.08, 0.97, 0.4]]) + rng.normal(0, 0.02, (3, 2, 3))
    out = opencv_warp_affine(x, forward)
    rows, cols = np.mgrid[0:12, 0:10].astype(np.float64)

    def grid(a: np.ndarray) -> np.ndarray:  # 1/1024 px per term, then the nearest 1/32 px
        fixed = np.rint(a[0] * cols * 1024) + np.rint((a[1] * rows + a[2]) * 1024)
        return np.floor((fixed + 16) / 32) / 32

    for i in range(3):
        inv = np.linalg.inv(np.vstack([forward[i], [0, 0, 1]]))[:2]
        src_c, src_r = grid(inv[0]), grid(inv[1])
        for k in range(2):
            ref = ndimage.map_coordinates(x[i, ..., k], [src_r, src_c], order=1, mode="mirror")
            np.testing.assert_allclose(out[i, ..., k], ref, atol=1e-6)


def _scipy15_map_coordinate(value: float, size: int) -> float:
    """SciPy 1.5's `map_coordinate(in, len, NI_EXTEND_REFLECT)`, transliterated."""
    if value < 0:
        period = 2 * size
        if value < -period:
            value = period * math.trunc(-value / period) + value
        return value + period if value < -size else -value - 1
    if value > size - 1:
        period = 2 * size
        value -= period * math.trunc(value / period)
        return period - value - 1 if value >= size else value
    return value


def _scipy15_sample(row: np.ndarray, coord: float) -> float:
    """SciPy 1.5's order-1 `map_coordinates(mode="reflect")` on a 1-D signal."""
    size = len(row)
    cc = _scipy15_map_coordinate(coord, size)
    if cc <= -1.0:
        return 0.0
    start = math.floor(cc)
    total = 0.0
    for k in (0, 1):
        i = start + k
        i = -i if i < 0 else (2 * size - 2 - i if i >= size else i)  # mirrored neighbours
        total += float(row[i]) * (1.0 - abs(start - cc + k))
    return total


def test_pre16_reflect_border_by_hand() -> None:
    x = np.array([10.0, 20.0, 40.0, 80.0, 160.0], np.float32)[None, None, :, None]  # W = 5
    coords = np.array([-0.3, 4.5, -1.5, 5.2, -1e-17, 2.25])
    expected = [
        0.7 * 20 + 0.3 * 10,  # today's "reflect" gives 10, "mirror" 0.3 * 20 + 0.7 * 10
        0.5 * 160 + 0.5 * 80,  # between the last pixel and the axis: mirrored neighbour
        15.0,  # -1.5 reflects to 0.5
        0.8 * 160 + 0.2 * 80,  # 5.2 reflects to 3.8
        0.0,  # reflects to -1 exactly: the constant
        0.75 * 40 + 0.25 * 80,  # inside: plain bilinear
    ]
    got = map_coordinates_pre16_reflect(x, np.zeros((1, 1, 6)), coords[None, None])
    np.testing.assert_allclose(got[0, 0, :, 0], expected, rtol=1e-6)
    now = ndimage.map_coordinates(x[0, 0, :, 0], [coords[:1]], order=1, mode="reflect")
    assert abs(now[0] - expected[0]) > 5, "today's SciPy differs at the border"


def test_pre16_reflect_matches_scipy_1_5_on_random_coordinates() -> None:
    rng = np.random.default_rng(2)
    row = rng.random(7).astype(np.float32)
    coords = np.concatenate([rng.uniform(-20, 27, 400), [-14.0, -7.0, 6.0, 7.0, 13.0, 14.0]])
    got = map_coordinates_pre16_reflect(
        row[None, None, :, None], np.zeros((1, 1, len(coords))), coords[None, None]
    )[0, 0, :, 0]
    expected = np.array([_scipy15_sample(row, c) for c in coords], np.float32)
    np.testing.assert_array_equal(got, expected)
    assert _pre16_reflect(np.array([-0.3, 6.5, 7.5]), 7).tolist() == pytest.approx([-0.7, 6.5, 5.5])
    inside = rng.uniform(0, 6, (1, 3, 50))  # away from the border: plain bilinear
    image = rng.random((1, 7, 7, 1)).astype(np.float32)
    cols = rng.uniform(0, 6, (1, 3, 50))
    ref = ndimage.map_coordinates(image[0, ..., 0], [inside[0], cols[0]], order=1)
    np.testing.assert_allclose(
        map_coordinates_pre16_reflect(image, inside, cols)[0, ..., 0], ref, atol=1e-6
    )


# ------------------------------------------------------------------ spatter


def test_spatter_liquid_cast_wraps_like_the_release() -> None:
    liquid = np.array([0.0, 0.5, 1.0, 1.2, 1.9])
    # (liquid * 255).astype(np.uint8): 0, 127.5, 255, 306, 484.5 -> truncated, modulo 256
    assert _spatter.release_uint8_cast(liquid).tolist() == [0, 127, 255, 50, 228]


def test_spatter_water_uses_the_wrapping_cast(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    cast = _spatter.release_uint8_cast

    def spy(liquid):
        seen.append(float(liquid.max()))
        return cast(liquid)

    monkeypatch.setattr(_spatter, "release_uint8_cast", spy)
    c10.spatter(_on_grid((32, 32, 32, 3)), 3, np.random.default_rng(0))
    assert seen and seen[0] > 1.0  # severity 3's layer exceeds 1 (one image in five)


# ------------------------------------------------------------------ storage and input


def test_each_release_stores_uint8_its_own_way() -> None:
    values = np.array([100.7, 100.2, 100 - 1e-5, 255.4, -3.0]) / 255
    assert to_uint8(values, "cifar10-c").tolist() == [100, 100, 100, 255, 0]  # np.uint8(x)
    assert to_uint8(values, "mnist-c").tolist() == [101, 100, 100, 255, 0]  # np.round
    assert to_uint8(values).tolist() == [101, 100, 100, 255, 0]  # clean images: nearest
    with pytest.raises(ValueError, match="unknown benchmark"):
        to_uint8(values, "imagenet-c")


@pytest.mark.parametrize(
    ("benchmark", "name"),
    [("cifar10-c", "contrast"), ("cifar10-c", "gaussian_noise"), ("mnist-c", "rotate")],
)
def test_uint8_input_gives_the_release_storage(benchmark: str, name: str) -> None:
    shape = (3, 32, 32, 3) if benchmark == "cifar10-c" else (3, 28, 28)
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = corrupt(pixels, name, 2, seed=1, benchmark=benchmark)
    assert out.dtype == np.uint8 and out.shape == pixels.shape
    floats = corrupt(pixels / np.float32(255), name, 2, seed=1, benchmark=benchmark)
    assert floats.dtype == np.float32
    np.testing.assert_array_equal(out, to_uint8(floats, benchmark))
    assert corrupt(pixels[:0], name, 2, benchmark=benchmark).dtype == np.uint8
    if benchmark == "cifar10-c":  # truncation: never above the rounded value
        assert (out <= to_uint8(floats, "mnist-c")).all()
        assert (out < to_uint8(floats, "mnist-c")).mean() > 0.2
    with pytest.raises(ValueError, match=r"uint8 \(0\.\.255\) or floats"):
        corrupt(pixels.astype(np.int16), name, 2, benchmark=benchmark)


# ------------------------------------------------------------------ MNIST-C identity, division


def test_mnist_c_identity_set() -> None:
    assert "identity" not in MNIST_C and list(RELEASES["mnist-c"])[:2] == ["identity", "shot_noise"]
    entry = get_corruption("identity")
    assert (entry.severities, entry.default_severity) == ((1,), 1)
    pixels = np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(corrupt(pixels, "identity"), pixels)
    floats = pixels / np.float32(255)
    np.testing.assert_array_equal(corrupt(floats, "identity"), floats)
    x = ((pixels[..., None] / 255 - 0.13) / 0.31).astype(np.float32)
    data = Dataset("toy", x, np.zeros(4, int), x, np.zeros(4, int), 10, mean=0.13, std=0.31)
    assert "identity" not in [s.name for s in corruption_shifts(data)]  # not one of the 15
    (shift,) = corruption_shifts(data, names=["identity"])
    np.testing.assert_allclose(shift.apply(x), x, atol=1e-5)


def test_dotted_line_divides_like_python_3() -> None:
    """Rows 3 -> 20 over 27 columns: slope 17 / 27 (Python 3), not 17 // 27 = 0 (Python 2).
    At column 26 (drawn) the line is at row 3 + 26 * 17 / 27 = 19.4."""
    x = np.zeros((1, 28, 28, 1), np.float32)
    y = mnist_c.draw_dotted_line(x, np.array([3]), np.array([20]))
    assert int(np.argmax(y[0, :, 26, 0])) == 19
