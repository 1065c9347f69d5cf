"""Multilayer perceptron (the covariate-shift paper's MNIST network), classifier or regressor."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from bnn_shift.models.first_layer import FirstLayer


class MLP(eqx.Module):
    """ReLU MLP mapping one example (any shape, flattened) to `n_outputs` values: class logits,
    or regression outputs (one output is fine); hidden=() is a linear model.

    Parameters are `layers.{i}.weight` (out, in) and `layers.{i}.bias` (out,), the
    paths priors select on. Call on a single example; `jax.vmap` for batches.
    """

    layers: tuple[eqx.nn.Linear, ...]
    in_features: int = eqx.field(static=True)

    def __init__(self, in_features: int, hidden: Sequence[int], n_outputs: int, *, key: jax.Array):
        hidden = tuple(hidden)
        if in_features < 1 or n_outputs < 1 or any(h < 1 for h in hidden):
            raise ValueError(
                f"MLP needs in_features >= 1, hidden sizes >= 1 (or hidden=() for a linear "
                f"model) and n_outputs >= 1; got in_features={in_features}, hidden={hidden}, "
                f"n_outputs={n_outputs}"
            )
        sizes = [in_features, *hidden, n_outputs]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            eqx.nn.Linear(d_in, d_out, key=k) for d_in, d_out, k in zip(sizes[:-1], sizes[1:], keys)
        )
        self.in_features = in_features

    @property
    def first_layer(self) -> FirstLayer:
        """`layers.0.weight` (out, in_features), applied to the flattened example."""
        return FirstLayer("layers.0.weight", "dense")

    def __call__(self, x: jax.Array) -> jax.Array:
        """(…) one example with `in_features` entries -> (n_outputs,) logits or outputs."""
        h = jnp.reshape(x, (-1,))
        for layer in self.layers[:-1]:
            h = jax.nn.relu(layer(h))
        return self.layers[-1](h)


def paper_mlp(*, key: jax.Array, in_features: int = 784, n_classes: int = 10) -> MLP:
    """The paper's 784-256-256-10 ReLU MLP (269,322 parameters on MNIST)."""
    return MLP(in_features, (256, 256), n_classes, key=key)
