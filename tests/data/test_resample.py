"""8x8 digits <-> 28x28 MNIST format: hand-computed cases and invariants."""

from __future__ import annotations

import numpy as np
import pytest

from bnn_shift.data import downsample_to_digits, upsample_digits


def test_downsample_exact_area_average() -> None:
    x = np.zeros((2, 28, 28), np.float32)
    x[0, 4:24, 4:24] = 0.75  # the whole central 20x20 box
    x[1, 4:24, 4:7] = 1.0  # box columns 0..2: 3 pixels wide
    out = downsample_to_digits(x, quantize=False)
    np.testing.assert_allclose(out[0], 0.75)
    # output column 0 covers box pixels [0, 2.5): all on; column 1 covers [2.5, 5): half a pixel
    np.testing.assert_allclose(out[1][:, 0], 1.0)
    np.testing.assert_allclose(out[1][:, 1], 0.5 / 2.5)
    np.testing.assert_allclose(out[1][:, 2:], 0.0)
    # quantised to sixteenths like scikit-learn's 0..16 counts: 0.2 * 16 = 3.2 -> 3
    np.testing.assert_allclose(downsample_to_digits(x)[1][:, 1], 3 / 16)
    assert downsample_to_digits(x[..., None]).shape == (2, 8, 8)


def test_upsample_shape_range_and_centre_of_mass() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 17, (5, 8, 8)) / 16.0
    x[:, :, :3] = 0.0  # mass off to the right: the placement must re-centre it
    out = upsample_digits(x)
    assert out.shape == (5, 28, 28) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    grid = np.arange(28)
    for img in out:
        mass = img.sum()
        rows, cols = img.sum(1) @ grid / mass, img.sum(0) @ grid / mass
        # integer placement: the centre of mass is within half a pixel of the centre
        assert abs(rows - 13.5) <= 0.5 + 1e-6 and abs(cols - 13.5) <= 0.5 + 1e-6
    # the 20x20 box carries all the mass: area x 6.25, less what the zero border blurs away
    ratio = out.sum((1, 2)) / x.sum((1, 2))
    assert np.all((ratio > 5.0) & (ratio <= 6.25 + 1e-4))


def test_blank_and_round_trip() -> None:
    assert not upsample_digits(np.zeros((1, 8, 8))).any()
    flat = np.full((1, 8, 8), 0.5)
    np.testing.assert_allclose(upsample_digits(flat)[0, 10:18, 10:18], 0.5, atol=1e-6)
    from sklearn.datasets import load_digits

    digits = load_digits().images[:50] / 16.0
    back = downsample_to_digits(upsample_digits(digits), quantize=False)
    # centring may shift by up to 4 px (1.6 digit pixels), so compare up to that shift
    assert np.corrcoef(back.sum(1).ravel(), digits.sum(1).ravel())[0, 1] > 0.5


@pytest.mark.parametrize(
    "fn, shape", [(upsample_digits, (3, 28, 28)), (downsample_to_digits, (3, 8, 8))]
)
def test_bad_shapes_and_ranges(fn, shape) -> None:
    with pytest.raises(ValueError, match="expects"):
        fn(np.zeros(shape))
    good = (3, 8, 8) if fn is upsample_digits else (3, 28, 28)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fn(np.full(good, 16.0))
