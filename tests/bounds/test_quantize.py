import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bnn_shift.bounds.quantize import (
    assign,
    init_levels,
    kmeans_levels,
    quantize,
    round_levels,
    uniform_levels,
)


def test_forward_snaps_to_the_nearest_level():
    levels = jnp.array([-1.0, 0.0, 2.0])
    w = jnp.array([-3.0, -0.6, -0.4, 0.9, 1.1, 5.0])
    np.testing.assert_array_equal(assign(w, levels), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(quantize(w, levels), [-1.0, -1.0, 0.0, 0.0, 2.0, 2.0])


def test_straight_through_gradients():
    # d/dw Σ a_i q_i = a (identity pass-through); d/dlevel_j = Σ of a_i over the weights on j.
    levels = jnp.array([-1.0, 0.0, 2.0])
    w = jnp.array([-3.0, -0.6, -0.4, 0.9, 1.1, 5.0])
    a = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    gw, gl = jax.grad(lambda w, c: jnp.sum(a * quantize(w, c)), argnums=(0, 1))(w, levels)
    np.testing.assert_array_equal(gw, a)
    np.testing.assert_array_equal(gl, [1 + 2, 3 + 4, 5 + 6])


def test_uniform_levels_are_bin_means():
    w = np.array([-1.0, -0.9, 0.1, 0.2, 0.3, 1.0])
    # edges on [-1, 1] for L = 2: [-1, 0), [0, 1]
    np.testing.assert_allclose(uniform_levels(w, 2), [-0.95, 0.4], rtol=1e-6)
    # an empty bin falls back to its centre
    np.testing.assert_allclose(
        uniform_levels(np.array([-1.0, 1.0]), 3), [-1.0, 0.0, 1.0], atol=1e-7
    )


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([-2.0, 0.5, 3.0])
    w = np.concatenate([c + 0.05 * rng.standard_normal(200) for c in centres])
    np.testing.assert_allclose(kmeans_levels(w, 3), centres, atol=0.02)
    assert init_levels(w, 3, "kmeans").dtype == np.float32
    with pytest.raises(ValueError, match="level init"):
        init_levels(w, 3, "median")


def test_levels_and_weights_train_jointly():
    # Targets sit in three clusters; the initial levels are off. Training (w, levels) on
    # ||quantize(w, levels) - target||² moves each level to its cluster mean.
    rng = np.random.default_rng(1)
    centres = np.array([-1.0, 0.2, 1.5])
    target = jnp.asarray(np.repeat(centres, 50) + 0.01 * rng.standard_normal(150), jnp.float32)
    w = target + 0.01
    levels = jnp.array([-0.7, 0.0, 1.0])
    opt = optax.adam(0.02)

    def loss(t):
        return jnp.mean((quantize(*t) - target) ** 2)

    def step(carry, _):
        params, state = carry
        updates, state = opt.update(jax.grad(loss)(params), state)
        return (optax.apply_updates(params, updates), state), None

    start = float(loss((w, levels)))
    init = ((w, levels), opt.init((w, levels)))
    (params, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=300))(init)
    assert float(loss(params)) < start / 100
    np.testing.assert_allclose(params[1], centres, atol=0.01)


def test_coded_levels_and_bad_inputs():
    levels = np.array([0.1, 1 / 3], np.float32)
    assert np.all(np.abs(round_levels(levels, "float16") - levels) <= 2**-11 * np.abs(levels))
    with pytest.raises(ValueError, match="overflows"), np.errstate(over="ignore"):
        round_levels(np.array([1e6], np.float32), "float16")
    with pytest.raises(ValueError, match="NaN"):
        uniform_levels(np.array([np.nan]), 2)
    with pytest.raises(ValueError, match="n_levels"):
        uniform_levels(np.ones(3), 0)
