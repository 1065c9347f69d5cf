"""Multilayer perceptron classifier (the covariate-shift paper's MNIST network)."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp


class MLP(eqx.Module):
    """ReLU MLP mapping one example (any shape, flattened) to class logits.

    Parameters are `layers.{i}.weight` (out, in) and `layers.{i}.bias` (out,), the
    paths priors select on. Call on a single example; `jax.vmap` for batches.
    """

    layers: tuple[eqx.nn.Linear, ...]
    in_features: int = eqx.field(static=True)

    def __init__(self, in_features: int, hidden: Sequence[int], n_classes: int, *, key: jax.Array):
        if in_features < 1 or n_classes < 2 or any(h < 1 for h in hidden):
            raise ValueError(
                f"MLP needs in_features >= 1, hidden sizes >= 1 and n_classes >= 2; "
                f"got in_features={in_features}, hidden={tuple(hidden)}, n_classes={n_classes}"
            )
        sizes = [in_features, *hidden, n_classes]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            eqx.nn.Linear(d_in, d_out, key=k) for d_in, d_out, k in zip(sizes[:-1], sizes[1:], keys)
        )
        self.in_features = in_features

    def __call__(self, x: jax.Array) -> jax.Array:
        """(…) one example with `in_features` entries -> (n_classes,) logits."""
        h = jnp.reshape(x, (-1,))
        for layer in self.layers[:-1]:
            h = jax.nn.relu(layer(h))
        return self.layers[-1](h)


def paper_mlp(*, key: jax.Array, in_features: int = 784, n_classes: int = 10) -> MLP:
    """The paper's 784-256-256-10 ReLU MLP (269,322 parameters on MNIST)."""
    return MLP(in_features, (256, 256), n_classes, key=key)
