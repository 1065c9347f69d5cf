"""Per-example log-likelihoods of equinox classifiers, and checks on the data they see."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.models.params import PyTree, combine_params

LogLikelihood = Callable[[PyTree, jax.Array, jax.Array], jax.Array]


def check_classification_data(x, y, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate inputs (n, ...) and integer labels (n,); -> (float32 x, int32 y)."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 2:
        raise ValueError(f"inputs must be shaped (n_examples, ...), got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"labels must be shaped ({len(x)},) to match the inputs, got {y.shape}")
    if len(x) == 0:
        raise ValueError("the data set is empty")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise ValueError(
            "inputs contain NaN or inf (or are not numeric); clean them before fitting"
        )
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("labels must be integers 0..n_classes-1")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(
            f"labels must lie in [0, {n_classes}) for a model with {n_classes} outputs; found "
            f"values from {y.min()} to {y.max()}"
        )
    return x.astype(np.float32, copy=False), y.astype(np.int32, copy=False)


PRECISIONS = ("float32", "tensorfloat32", "bfloat16")


def with_precision(loglik: LogLikelihood, precision: str) -> LogLikelihood:
    """The same likelihood with its matmuls in `precision`; sums and softmax stay float32.

    tensorfloat32 changes only how the accelerator multiplies (a no-op on CPUs); bfloat16 casts
    the inputs and parameters, so it also saves memory bandwidth.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "float32":
        return loglik

    def reduced(params: PyTree, static: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
        if precision == "bfloat16":
            params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
            x = x.astype(jnp.bfloat16)
            return loglik(params, static, x, y).astype(jnp.float32)
        with jax.default_matmul_precision("tensorfloat32"):
            return loglik(params, static, x, y)

    return reduced


def categorical_loglik(
    params: PyTree, static: PyTree, x: jax.Array, y: jax.Array
) -> jax.Array:  # (n,)
    """log p(y_i | x_i, params) for a classifier returning logits for one example."""
    model = combine_params(params, static)
    logits = jax.vmap(model)(x).astype(jnp.float32)  # (n, k)
    return jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1)[:, 0]


def predict_probs(params: PyTree, static: PyTree, x: jax.Array) -> jax.Array:  # (n, k)
    """Softmax class probabilities of one parameter setting."""
    model = combine_params(params, static)
    return jax.nn.softmax(jax.vmap(model)(x), axis=-1)


def check_inputs(name: str, x, feature_shape: tuple[int, ...]) -> np.ndarray:
    """Validate an evaluation input set against the training feature shape."""
    x = np.asarray(x, np.float32)
    if x.shape[1:] != feature_shape:
        raise ValueError(
            f"eval set {name!r} has examples of shape {x.shape[1:]}, training data {feature_shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"eval set {name!r} contains NaN or inf")
    return x


def n_outputs(model: PyTree, x) -> int:
    """Number of logits the model returns for one example of `x` (n, ...)."""
    shape = np.shape(x)
    if len(shape) < 2:
        raise ValueError(f"inputs must be shaped (n_examples, ...), got shape {shape}")
    try:
        out = eqx.filter_eval_shape(model, jax.ShapeDtypeStruct(shape[1:], jnp.float32))
    except (TypeError, ValueError) as err:
        raise ValueError(f"the model cannot take examples of shape {shape[1:]}: {err}") from err
    return int(out.shape[-1])
