"""Tests for bnn_shift.models.resnet: ResNet-20 with FRN + TLU and swish."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.models import (
    FRN,
    FirstLayer,
    ResNet20FRN,
    resnet20_frn_cifar,
    resnet20_frn_mnist,
)
from bnn_shift.models.params import param_paths
from bnn_shift.models.resnet import MIN_IMAGE_SIZE
from bnn_shift.priors import EmpCov, Gaussian, by_path
from bnn_shift.priors.patches import extract_patches

N_CONVS = 1 + 9 * 2 + 2  # stem, two per block, two 1×1 shortcut projections


def n_params(model) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))


def params_of(model):
    return eqx.partition(model, eqx.is_inexact_array)[0]


@pytest.fixture(scope="module")
def tiny():
    # width 2 on 6×6×2 images: a small twin with the full 20-layer wiring
    return ResNet20FRN(2, 3, image_size=6, width=2, key=jax.random.key(0))


def expected_count(c_in: int, n_classes: int, w: int = 16, n_blocks: int = 3) -> int:
    conv = lambda i, o, k: k * k * i * o + o  # weights + bias
    frn = lambda c: 3 * c  # gamma, beta, tau
    total = conv(c_in, w, 3) + frn(w)
    channels = w
    for stage in range(3):
        out = w * 2**stage
        for b in range(n_blocks):
            total += conv(channels, out, 3) + frn(out) + conv(out, out, 3) + frn(out)
            if stage > 0 and b == 0:
                total += conv(channels, out, 1) + frn(out)
            channels = out
    return total + channels * n_classes + n_classes


def test_parameter_counts():
    # Stem 448 + 48; stage 1: 3 × 2 × (2,320 + 48) = 14,208; stage 2: 4,736 + 9,344 + 640
    # + 4 × 9,344 = 52,096; stage 3: 18,688 + 37,120 + 2,304 + 4 × 37,120 = 206,592; fc 650.
    assert expected_count(3, 10) == 274_042
    assert n_params(resnet20_frn_cifar(jax.random.key(0))) == 274_042
    # MNIST differs only in the stem: 3·3·1·16 + 16 = 160 instead of 448.
    assert n_params(resnet20_frn_mnist(jax.random.key(0))) == 274_042 - 288
    assert n_params(ResNet20FRN(2, 3, image_size=6, width=2, key=jax.random.key(0))) == (
        expected_count(2, 3, 2)
    )
    resnet8 = ResNet20FRN(3, 10, image_size=32, depth=8, key=jax.random.key(0))
    assert n_params(resnet8) == expected_count(3, 10, n_blocks=1)


def test_param_paths_and_shapes():
    model = resnet20_frn_cifar(jax.random.key(0))
    params = params_of(model)
    paths = param_paths(params)
    shapes = dict(zip(paths, (leaf.shape for leaf in jax.tree.leaves(params)), strict=True))
    assert len(paths) == N_CONVS * 5 + 2  # conv weight+bias and FRN gamma/beta/tau; fc
    assert shapes["conv1.weight"] == (16, 3, 3, 3)
    assert shapes["norm1.tau"] == (16, 1, 1)
    assert shapes["blocks.2.conv2.weight"] == (16, 16, 3, 3)
    assert shapes["blocks.3.conv1.weight"] == (32, 16, 3, 3)
    assert shapes["blocks.3.shortcut_conv.weight"] == (32, 16, 1, 1)
    assert shapes["blocks.6.shortcut_norm.gamma"] == (64, 1, 1)
    assert shapes["blocks.8.conv2.bias"] == (64, 1, 1)
    assert shapes["fc.weight"] == (10, 64)
    shortcuts = {p.split(".")[1] for p in paths if "shortcut" in p}
    assert shortcuts == {"3", "6"}


def test_init_is_he_normal_with_zero_biases():
    model = resnet20_frn_cifar(jax.random.key(1))
    w = np.asarray(model.blocks[8].conv2.weight)  # fan_in 64·9 = 576, 36,864 draws
    assert np.std(w) == pytest.approx(np.sqrt(2 / 576), rel=0.03)
    assert np.abs(w).max() <= 2 * np.sqrt(2 / 576) / 0.87962566 + 1e-6  # truncated at 2 std
    assert not np.any(np.asarray(model.blocks[8].conv2.bias))
    assert not np.any(np.asarray(model.fc.bias))
    np.testing.assert_array_equal(model.norm1.gamma, 1.0)


def test_output_shape_vmap_and_jit(tiny):
    x = jax.random.normal(jax.random.key(2), (3, 6, 6, 2))
    one = eqx.filter_jit(tiny)(x[0])
    assert one.shape == (3,)
    batched = eqx.filter_jit(lambda m, xs: jax.vmap(m)(xs))(tiny, x)
    assert batched.shape == (3, 3)
    np.testing.assert_allclose(batched[0], one, rtol=1e-5, atol=1e-5)
    assert jnp.all(jnp.isfinite(batched))


def test_frn_normalises_per_channel_by_hand():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 5)) * np.array([0.1, 1.0, 30.0])[:, None, None] + 0.5
    frn = FRN(3)
    gamma, beta, tau = np.array([1.0, 2.0, 0.5]), np.array([0.0, -0.3, 0.1]), np.array([-9, 0, -9])
    frn = eqx.tree_at(
        lambda f: (f.gamma, f.beta, f.tau),
        frn,
        tuple(jnp.asarray(v[:, None, None], jnp.float32) for v in (gamma, beta, tau)),
    )
    got = np.asarray(frn(jnp.asarray(x, jnp.float32)))
    for c in range(3):
        nu2 = np.mean(x[c] ** 2)  # mean square over the 4×5 pixels of channel c
        expected = np.maximum(gamma[c] * x[c] / np.sqrt(nu2 + 1e-6) + beta[c], tau[c])
        np.testing.assert_allclose(got[c], expected, rtol=1e-5, atol=1e-6)
    # with the identity affine and no threshold each channel has unit mean square, whatever
    # its scale, so rescaling one channel changes nothing
    plain = eqx.tree_at(lambda f: f.tau, FRN(3), jnp.full((3, 1, 1), -jnp.inf))
    out = np.asarray(plain(jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(np.mean(out**2, axis=(1, 2)), 1.0, rtol=1e-4)
    scaled = x * np.array([7.0, 1.0, 0.01])[:, None, None]
    np.testing.assert_allclose(plain(jnp.asarray(scaled, jnp.float32)), out, rtol=1e-4, atol=1e-5)


# ---- an independent numpy forward pass pins the wiring (activations, shortcuts, padding) ----


def _np_conv(h, conv, stride):  # (C, H, W) with TF "SAME" padding, weights (out, in, k, k)
    w, b = np.asarray(conv.weight, np.float64), np.asarray(conv.bias, np.float64)
    k, (_, side, _) = w.shape[-1], h.shape
    out = -(-side // stride)
    pad = max((out - 1) * stride + k - side, 0)
    h = np.pad(h, ((0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2)))
    windows = np.lib.stride_tricks.sliding_window_view(h, (k, k), axis=(1, 2))
    windows = windows[:, ::stride, ::stride][:, :out, :out]  # (in, out, out, k, k)
    return np.einsum("ixyab,oiab->oxy", windows, w) + b


def _np_frn(h, frn):
    g, b, t = (np.asarray(v, np.float64) for v in (frn.gamma, frn.beta, frn.tau))
    return np.maximum(g * h / np.sqrt(np.mean(h**2, axis=(1, 2), keepdims=True) + 1e-6) + b, t)


def _swish(h):
    return h / (1 + np.exp(-h))


def test_forward_matches_numpy_reference(tiny):
    x = np.asarray(jax.random.normal(jax.random.key(3), (6, 6, 2)), np.float64)
    h = _swish(_np_frn(_np_conv(x.transpose(2, 0, 1), tiny.conv1, 1), tiny.norm1))
    for i, blk in enumerate(tiny.blocks):
        stride = 2 if i in (3, 6) else 1
        y = _swish(_np_frn(_np_conv(h, blk.conv1, stride), blk.norm1))
        y = _np_frn(_np_conv(y, blk.conv2, 1), blk.norm2)
        if i in (3, 6):
            h = _np_frn(_np_conv(h, blk.shortcut_conv, stride), blk.shortcut_norm)
        else:
            assert blk.shortcut_conv is None
        h = _swish(h + y)
    assert h.shape == (8, 2, 2)  # 6 -> 3 -> 2 with SAME padding
    logits = np.asarray(tiny.fc.weight) @ h.mean(axis=(1, 2)) + np.asarray(tiny.fc.bias)
    got = eqx.filter_jit(tiny)(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, logits, rtol=2e-4, atol=2e-5)


def test_first_layer_matches_first_conv(tiny):
    spec = tiny.first_layer
    assert spec == FirstLayer("conv1.weight", "conv", 3, 1, 1)
    assert resnet20_frn_cifar(jax.random.key(0)).first_layer == spec
    x = np.asarray(jax.random.normal(jax.random.key(4), (1, 6, 6, 2)))
    patches = extract_patches(x, spec.kernel_size, spec.padding, spec.stride)  # (36, 18)
    w = np.asarray(tiny.conv1.weight).reshape(2, -1)  # (out, C·k·k)
    expected = patches @ w.T + np.asarray(tiny.conv1.bias).reshape(1, -1)
    got = np.asarray(tiny.first_conv(jnp.asarray(x[0]))).reshape(-1, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_gradients_are_finite_and_reach_every_conv(tiny):
    x = jax.random.normal(jax.random.key(5), (4, 6, 6, 2))
    y = jnp.array([0, 1, 2, 0])
    params, static = eqx.partition(tiny, eqx.is_inexact_array)

    def loss(p):
        logits = jax.vmap(eqx.combine(p, static))(x)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), y])

    grads = jax.jit(jax.grad(loss))(params)
    for path, g in zip(param_paths(grads), jax.tree.leaves(grads)):
        assert np.all(np.isfinite(g)), path
        if path.endswith("conv1.weight") or path.endswith("conv2.weight"):
            assert np.any(g != 0), path


def test_by_path_selects_the_convs():
    params = params_of(resnet20_frn_cifar(jax.random.key(0)))
    paths = param_paths(params)
    by_type = by_path({eqx.nn.Conv2d: Gaussian(0.1), "*": Gaussian(1.0)}).assign(params)
    conv_paths = sorted(paths[i] for i in by_type[eqx.nn.Conv2d])
    assert len(conv_paths) == 2 * N_CONVS
    assert all(
        p.rsplit(".", 1)[0].endswith(("conv1", "conv2", "shortcut_conv")) for p in conv_paths
    )
    by_glob = by_path({"*conv*.weight": Gaussian(0.1), "*": Gaussian(1.0)}).assign(params)
    assert len(by_glob["*conv*.weight"]) == N_CONVS
    norms = by_path({FRN: Gaussian(0.1), "*": Gaussian(1.0)}).assign(params)
    assert len(norms[FRN]) == 3 * N_CONVS


def test_empcov_on_the_stem(tiny):
    images = np.asarray(jax.random.normal(jax.random.key(6), (10, 6, 6, 2)))
    first = tiny.first_layer
    empcov = EmpCov.from_patches(images, first.kernel_size, first.padding, first.stride)
    prior = by_path({first.path: empcov, "*": Gaussian(1.0)})
    assert prior.assign(params_of(tiny))["conv1.weight"] == [0]  # only the stem, not blocks
    log_prob = eqx.filter_jit(lambda pr, p: pr.log_prob(p))(prior, params_of(tiny))
    assert np.isfinite(float(log_prob))


def test_bad_sizes_raise():
    ResNet20FRN(1, 10, image_size=MIN_IMAGE_SIZE, width=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match=f"image_size >= {MIN_IMAGE_SIZE}"):
        ResNet20FRN(1, 10, image_size=MIN_IMAGE_SIZE - 1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="ResNet20FRN needs"):
        ResNet20FRN(0, 10, image_size=32, key=jax.random.key(0))
    with pytest.raises(ValueError, match="ResNet20FRN needs"):
        ResNet20FRN(3, 10, image_size=32, width=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="6n \\+ 2"):
        ResNet20FRN(3, 10, image_size=32, depth=18, key=jax.random.key(0))


def test_wrong_input_shape_raises(tiny):
    with pytest.raises(ValueError, match=r"\(6, 6, 2\)"):
        tiny(jnp.zeros((2, 6, 6)))  # channels-first
    with pytest.raises(ValueError, match="vmap"):
        tiny(jnp.zeros((4, 6, 6, 2)))  # a batch
