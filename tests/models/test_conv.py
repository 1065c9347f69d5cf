"""Tests for bnn_shift.models.conv: the im2col path equals equinox's native Conv2d."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_shift.models import AttentionClassifier, LeNet5, ResNet20FRN
from bnn_shift.models.conv import CONV_PATH_ENV, conv2d, conv2d_matmul, conv_path

TOL = {"rtol": 1e-5, "atol": 1e-5}

# (in, out, kernel, stride, padding, side): LeNet (5, pad 2 / 0), ResNet (3, SAME, stride 1 / 2;
# 1×1 stride-2 shortcut), a stride-2 5×5, patch embeddings (stride == kernel, also a side the
# patch does not divide), explicit asymmetric padding.
LAYERS = {
    "k5_pad2": (2, 6, 5, 1, 2, 12),
    "k5_pad0": (6, 4, 5, 1, 0, 10),
    "k3_pad1": (3, 4, 3, 1, 1, 9),
    "k3_same": (3, 4, 3, 1, "SAME", 8),
    "k3_same_stride2": (4, 8, 3, 2, "SAME", 9),
    "k1_stride2": (4, 8, 1, 2, "SAME", 8),
    "k5_pad2_stride2": (2, 3, 5, 2, 2, 11),
    "patch7": (1, 8, 7, 7, 0, 28),
    "patch4_crop": (3, 5, 4, 4, 0, 10),
    "asymmetric": (2, 3, 3, 1, ((1, 2), (0, 1)), 7),
}


def make_layer(name: str, use_bias: bool = True) -> tuple[eqx.nn.Conv2d, jax.Array]:
    c_in, c_out, kernel, stride, padding, side = LAYERS[name]
    key_layer, key_bias, key_x = jax.random.split(jax.random.key(0), 3)
    layer = eqx.nn.Conv2d(
        c_in, c_out, kernel, stride=stride, padding=padding, use_bias=use_bias, key=key_layer
    )
    if use_bias:  # equinox's bias init is small; make it matter
        layer = eqx.tree_at(lambda c: c.bias, layer, jax.random.normal(key_bias, (c_out, 1, 1)))
    return layer, jax.random.normal(key_x, (c_in, side, side))


def close(got, want) -> None:
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), **TOL)


def loss(apply, layer, x):
    return jnp.sum(jnp.sin(apply(layer, x)))


def native(layer, x):
    return layer(x)


def grads(apply, layer, x):
    """d loss / d (weight, bias, input)."""
    d_layer, d_x = jax.grad(loss, argnums=(1, 2))(apply, layer, x)
    return d_layer.weight, d_layer.bias, d_x


@pytest.mark.parametrize("name", LAYERS)
def test_forward_and_gradients_equal_native(name):
    layer, x = make_layer(name)
    close(conv2d_matmul(layer, x), layer(x))
    close(grads(conv2d_matmul, layer, x), grads(native, layer, x))


def test_without_bias():
    layer, x = make_layer("k3_pad1", use_bias=False)
    close(conv2d_matmul(layer, x), layer(x))
    close(grads(conv2d_matmul, layer, x)[::2], grads(native, layer, x)[::2])


@pytest.mark.parametrize("name", ["k5_pad2", "k3_same_stride2", "patch7"])
def test_vmap_equals_native(name):
    layer, x = make_layer(name)
    xs = jnp.stack([x, 2.0 * x + 1.0, -x])  # (n, C, H, W)

    def batched(apply):
        return lambda layer, xs: jax.vmap(lambda xi: apply(layer, xi))(xs)

    close(jax.jit(batched(conv2d_matmul))(layer, xs), jax.jit(batched(native))(layer, xs))
    close(
        jax.jit(grads, static_argnums=0)(batched(conv2d_matmul), layer, xs),
        jax.jit(grads, static_argnums=0)(batched(native), layer, xs),
    )


@pytest.mark.parametrize("name", ["k5_pad0", "k3_same_stride2", "patch7"])
def test_inside_fori_loop_equals_native(name):
    layer, x = make_layer(name)

    def descend(apply):
        def body(_, carry):
            layer, x = carry
            d_weight, d_bias, d_x = grads(apply, layer, x)
            layer = eqx.tree_at(
                lambda c: (c.weight, c.bias),
                layer,
                (layer.weight - 1e-2 * d_weight, layer.bias - 1e-2 * d_bias),
            )
            return layer, x - 1e-2 * d_x

        return jax.jit(lambda layer, x: jax.lax.fori_loop(0, 3, body, (layer, x)))

    got, want = descend(conv2d_matmul)(layer, x), descend(native)(layer, x)
    close((got[0].weight, got[0].bias, got[1]), (want[0].weight, want[0].bias, want[1]))


def test_conv_path_by_backend(monkeypatch):
    monkeypatch.delenv(CONV_PATH_ENV, raising=False)
    assert conv_path("cpu") == "matmul"
    assert conv_path("gpu") == conv_path("cuda") == conv_path("tpu") == "native"
    assert conv_path() == ("matmul" if jax.default_backend() == "cpu" else "native")


def test_conv_path_forced_by_environment(monkeypatch):
    monkeypatch.setenv(CONV_PATH_ENV, "native")
    assert conv_path("cpu") == "native"
    monkeypatch.setenv(CONV_PATH_ENV, "matmul")
    assert conv_path("gpu") == "matmul"
    monkeypatch.setenv(CONV_PATH_ENV, "fft")
    with pytest.raises(ValueError, match=CONV_PATH_ENV):
        conv_path()


def test_conv2d_follows_the_path(monkeypatch):
    layer, x = make_layer("k3_pad1")
    seen = []
    monkeypatch.setattr(
        "bnn_shift.models.conv.conv2d_matmul", lambda c, x: seen.append("matmul") or c(x)
    )
    for path, expected in [("native", []), ("matmul", ["matmul"])]:
        seen.clear()
        monkeypatch.setenv(CONV_PATH_ENV, path)
        close(conv2d(layer, x), layer(x))
        assert seen == expected
    with pytest.raises(ValueError, match="unknown conv path"):
        conv2d(layer, x, path="fft")


def test_unsupported_layers_run_natively():
    grouped = eqx.nn.Conv2d(4, 4, 3, padding=1, groups=2, key=jax.random.key(0))
    dilated = eqx.nn.Conv2d(4, 4, 3, padding=2, dilation=2, key=jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (4, 8, 8))
    for layer in (grouped, dilated):
        close(conv2d(layer, x, path="matmul"), layer(x))
        with pytest.raises(ValueError, match="groups=1"):
            conv2d_matmul(layer, x)


@pytest.mark.parametrize(
    "build",
    [
        lambda key: LeNet5(1, 10, image_size=28, key=key),
        lambda key: ResNet20FRN(3, 10, image_size=8, width=4, depth=8, key=key),
        lambda key: AttentionClassifier(
            1, 10, image_size=28, patch_size=7, d_model=16, n_heads=2, depth=1, key=key
        ),
    ],
    ids=["lenet", "resnet", "attention"],
)
def test_models_equal_on_both_paths(build, monkeypatch):
    model = build(jax.random.key(0))
    side, channels = model.image_size, model.in_channels
    xs = jax.random.normal(jax.random.key(1), (3, side, side, channels))
    out = {}
    for path in ("native", "matmul"):
        monkeypatch.setenv(CONV_PATH_ENV, path)  # read at trace time: one fresh jit per path
        out[path] = jax.jit(lambda m, xs: jax.vmap(m)(xs))(model, xs)
    close(out["matmul"], out["native"])
