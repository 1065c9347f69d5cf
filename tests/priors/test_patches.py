"""Streaming patch covariance against a direct computation, and the patch layout of a conv."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnn_shift.priors import extract_patches, patch_covariance


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(2, 9),
    size=st.integers(5, 9),
    channels=st.integers(1, 3),
    kernel=st.sampled_from([1, 3, 5]),
    padding=st.integers(0, 2),
    stride=st.integers(1, 2),
    chunk=st.integers(1, 4),
    seed=st.integers(0, 1000),
)
def test_streaming_covariance_equals_direct(
    n, size, channels, kernel, padding, stride, chunk, seed
):
    images = np.random.default_rng(seed).normal(size=(n, size, size, channels)) + 5.0
    patches = extract_patches(images, kernel, padding, stride)
    direct = np.cov(patches, rowvar=False).reshape(patches.shape[1], patches.shape[1])
    streamed = patch_covariance(images, kernel, padding, stride, chunk_images=chunk)
    np.testing.assert_allclose(streamed, direct, rtol=1e-9, atol=1e-10)


def test_patch_layout_matches_equinox_conv():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 9, 9, 3)).astype(np.float32)
    conv = eqx.nn.Conv2d(3, 4, 5, padding=2, stride=2, key=jax.random.key(0))
    patches = extract_patches(images[:1], 5, padding=2, stride=2)  # (25, 75)
    manual = patches @ np.asarray(conv.weight).reshape(4, -1).T + np.asarray(conv.bias)[:, 0, 0]
    out = conv(jnp.transpose(jnp.asarray(images[0]), (2, 0, 1)))  # (4, 5, 5)
    np.testing.assert_allclose(manual.reshape(5, 5, 4).transpose(2, 0, 1), out, atol=1e-5)


def test_patch_count_and_errors():
    images = np.zeros((3, 28, 28, 1))
    assert extract_patches(images, 5).shape == (3 * 24 * 24, 25)
    assert extract_patches(images, 5, padding=2).shape == (3 * 28 * 28, 25)
    with pytest.raises(ValueError, match=r"\(n, H, W, C\)"):
        extract_patches(np.zeros((3, 28, 28)), 5)
    with pytest.raises(ValueError, match="smaller than"):
        extract_patches(np.zeros((1, 3, 3, 1)), 5)
    with pytest.raises(ValueError, match="NaN"):
        patch_covariance(np.full((2, 6, 6, 1), np.nan), 3)
