"""Tests for bnn_shift.models.lenet: the covariate-shift paper's LeNet-5 variant."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.signal import correlate2d

from bnn_shift.models import FirstLayer
from bnn_shift.models.lenet import MIN_IMAGE_SIZE, LeNet5, lenet5_cifar, lenet5_mnist
from bnn_shift.models.params import param_paths


def n_params(model) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))


@pytest.fixture(scope="module")
def mnist():
    return lenet5_mnist(jax.random.key(0))


@pytest.fixture(scope="module")
def cifar():
    return lenet5_cifar(jax.random.key(1))


def test_parameter_counts(mnist, cifar):
    # REFERENCE 1.6: 156/456 + 2,416 + 48,120/69,240 + 10,164 + 850
    assert n_params(mnist) == 61_706
    assert n_params(cifar) == 83_126


@pytest.mark.parametrize(("preset", "channels", "side"), [("mnist", 1, 28), ("cifar", 3, 32)])
def test_param_paths_and_shapes(preset, channels, side, request):
    model = request.getfixturevalue(preset)
    params = eqx.partition(model, eqx.is_inexact_array)[0]
    paths = param_paths(params)
    shapes = dict(zip(paths, (leaf.shape for leaf in jax.tree.leaves(params)), strict=True))
    flat = 16 * ((side // 2 - 4) // 2) ** 2
    assert shapes == {
        "conv1.weight": (6, channels, 5, 5),
        "conv1.bias": (6, 1, 1),
        "conv2.weight": (16, 6, 5, 5),
        "conv2.bias": (16, 1, 1),
        "fc1.weight": (120, flat),
        "fc1.bias": (120,),
        "fc2.weight": (84, 120),
        "fc2.bias": (84,),
        "fc3.weight": (10, 84),
        "fc3.bias": (10,),
    }


def test_first_layer(mnist, cifar):
    assert mnist.first_layer == cifar.first_layer == FirstLayer("conv1.weight", "conv", 5, 1, 2)
    assert (cifar.conv1_kernel_size, cifar.conv1_padding) == (5, 2)


def test_output_shape_vmap_and_jit(cifar):
    x = jax.random.normal(jax.random.key(2), (4, 32, 32, 3))
    one = cifar(x[0])
    assert one.shape == (10,)
    batched = eqx.filter_jit(lambda m, xs: jax.vmap(m)(xs))(cifar, x)
    assert batched.shape == (4, 10)
    np.testing.assert_allclose(batched[0], one, rtol=1e-5, atol=1e-5)
    assert jnp.all(jnp.isfinite(batched))


def test_jit_over_params(mnist):
    # The HMC use: params are traced, the static half closes over.
    params, static = eqx.partition(mnist, eqx.is_inexact_array)
    x = jax.random.normal(jax.random.key(3), (2, 28, 28, 1))

    @jax.jit
    def logits(p, xs):
        return jax.vmap(eqx.combine(p, static))(xs)

    np.testing.assert_allclose(logits(params, x), jax.vmap(mnist)(x), rtol=1e-5, atol=1e-5)


def test_first_conv_matches_manual_correlation():
    c, side = 3, 13
    model = LeNet5(c, 4, image_size=side, key=jax.random.key(4))
    x = np.asarray(jax.random.normal(jax.random.key(5), (side, side, c)))
    w, b = np.asarray(model.conv1.weight), np.asarray(model.conv1.bias)
    padded = np.pad(x, ((2, 2), (2, 2), (0, 0)))
    expected = np.stack(
        [
            sum(correlate2d(padded[:, :, ci], w[o, ci], mode="valid") for ci in range(c))
            + b[o, 0, 0]
            for o in range(6)
        ],
        axis=-1,
    )
    got = model.first_conv(jnp.asarray(x))
    assert got.shape == (side, side, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def _avgpool(h):  # (H, W, C) -> (H//2, W//2, C), floor like VALID pooling
    s0, s1 = h.shape[0] // 2 * 2, h.shape[1] // 2 * 2
    h = h[:s0, :s1]
    return h.reshape(s0 // 2, 2, s1 // 2, 2, -1).mean(axis=(1, 3))


def _conv(h, w, b, pad):  # channels-last h, weights (out, in, k, k)
    h = np.pad(h, ((pad, pad), (pad, pad), (0, 0)))
    return np.stack(
        [
            sum(correlate2d(h[:, :, i], w[o, i], mode="valid") for i in range(w.shape[1]))
            + b[o, 0, 0]
            for o in range(w.shape[0])
        ],
        axis=-1,
    )


def test_forward_matches_manual_network():
    # odd size exercises floor pooling; tanh exercises the activation argument
    c, side = 2, 15
    model = LeNet5(c, 3, image_size=side, key=jax.random.key(6), activation=jnp.tanh)
    x = np.asarray(jax.random.normal(jax.random.key(7), (side, side, c)))
    p = {k: np.asarray(v) for k, v in zip(["w1", "b1", "w2", "b2"], _conv_params(model))}
    h = _avgpool(np.tanh(_conv(x, p["w1"], p["b1"], 2)))
    h = _avgpool(np.tanh(_conv(h, p["w2"], p["b2"], 0)))
    h = np.transpose(h, (2, 0, 1)).reshape(-1)  # documented (C, H, W) flatten order
    for layer in (model.fc1, model.fc2):
        h = np.tanh(np.asarray(layer.weight) @ h + np.asarray(layer.bias))
    expected = np.asarray(model.fc3.weight) @ h + np.asarray(model.fc3.bias)
    np.testing.assert_allclose(model(jnp.asarray(x)), expected, rtol=1e-4, atol=1e-5)


def _conv_params(model):
    return model.conv1.weight, model.conv1.bias, model.conv2.weight, model.conv2.bias


def test_bad_image_size_raises():
    assert MIN_IMAGE_SIZE == 12
    LeNet5(1, 10, image_size=12, key=jax.random.key(0))  # smallest that works
    with pytest.raises(ValueError, match="image_size >= 12"):
        LeNet5(1, 10, image_size=11, key=jax.random.key(0))


@pytest.mark.parametrize(("in_channels", "n_classes"), [(0, 10), (1, 1)])
def test_bad_channels_or_classes_raise(in_channels, n_classes):
    with pytest.raises(ValueError, match="LeNet5 needs"):
        LeNet5(in_channels, n_classes, image_size=28, key=jax.random.key(0))


def test_wrong_input_shape_raises(mnist):
    with pytest.raises(ValueError, match=r"\(28, 28, 1\)"):
        mnist(jnp.zeros((1, 28, 28)))  # channels-first
    with pytest.raises(ValueError, match="vmap"):
        mnist(jnp.zeros((2, 28, 28, 1)))  # a batch
