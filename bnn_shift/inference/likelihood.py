"""Per-example log-likelihoods (categorical for classifiers, Gaussian for regression), the
`Likelihood` bundle the engines take, and checks on the data they see."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bnn_shift.models.params import combine_params
from bnn_shift.typing import PyTree

LogLikelihood = Callable[[PyTree, jax.Array, jax.Array], jax.Array]


FLOAT32_MAX = float(np.finfo(np.float32).max)


def float32_values(a, what: str) -> np.ndarray:
    """Real numbers -> float32, checked after the cast: NaN, inf and values beyond float32's
    range (|a| > 3.4e38, which the cast turns into inf) are refused, as are complex and
    non-numeric arrays."""
    a = np.asarray(a)
    if np.iscomplexobj(a):
        raise ValueError(f"{what}: complex values; pass real numbers (e.g. their .real or abs)")
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{what}: dtype {a.dtype} is not numeric; convert them to floats first")
    with np.errstate(over="ignore", invalid="ignore"):
        cast = a.astype(np.float32, copy=False)
    finite = np.isfinite(cast)
    if not finite.all():
        beyond = np.isfinite(a[~finite]).any()
        raise ValueError(
            f"{what}: found NaN or inf"
            + (f" (values beyond float32's range, |x| > {FLOAT32_MAX:.3g})" if beyond else "")
            + "; clean or rescale them first"
        )
    return cast


def check_labels(y, n_classes: int, what: str = "labels") -> np.ndarray:
    """Integer class ids in [0, n_classes) (any shape) -> int32."""
    y = np.asarray(y)
    if np.iscomplexobj(y) or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise ValueError(
            f"{what} must be integer class ids 0..{n_classes - 1}, got dtype {y.dtype}; encode "
            "them first (e.g. np.unique(y, return_inverse=True)[1])"
        )
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"{what} must be integers 0..{n_classes - 1}; found fractional or NaN")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"{what} must lie in [0, {n_classes}) for a model with {n_classes} outputs; found "
            f"values from {y.min()} to {y.max()}"
        )
    return y.astype(np.int32, copy=False)


def check_examples(x) -> np.ndarray:
    """Inputs shaped (n_examples, ...) with n >= 1 (not cast)."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"inputs must be shaped (n_examples, ...), got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("the data set is empty")
    return x


def check_classification_data(x, y, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate inputs (n, ...) and integer labels (n,); -> (float32 x, int32 y)."""
    x, y = check_examples(x), np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"labels must be shaped ({len(x)},) to match the inputs, got {y.shape}")
    return float32_values(x, "inputs"), check_labels(y, n_classes)


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
    """Validate an evaluation input set against the training feature shape; -> float32."""
    x = np.asarray(x)
    if x.shape[1:] != feature_shape:
        raise ValueError(
            f"eval set {name!r} has examples of shape {x.shape[1:]}, training data {feature_shape}"
        )
    return float32_values(x, f"eval set {name!r}")


def output_shape(model: PyTree, x) -> tuple[int, ...]:
    """Shape of what the model returns for one example of `x` (n, ...)."""
    shape = np.shape(x)
    if len(shape) < 2:
        raise ValueError(f"inputs must be shaped (n_examples, ...), got shape {shape}")
    try:
        out = eqx.filter_eval_shape(model, jax.ShapeDtypeStruct(shape[1:], jnp.float32))
    except (TypeError, ValueError) as err:
        raise ValueError(f"the model cannot take examples of shape {shape[1:]}: {err}") from err
    return tuple(int(d) for d in out.shape)


def n_outputs(model: PyTree, x) -> int:
    """Number of logits (or means) the model returns for one example of `x` (n, ...); the model
    must return a vector per example."""
    shape = output_shape(model, x)
    if len(shape) != 1:
        raise ValueError(
            f"the model returns shape {shape} for one example; this likelihood needs a vector of "
            "outputs (k,) per example (a sequence model needs the sequence likelihoods)"
        )
    return shape[0]


def check_regression_data(x, y, n_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate inputs (n, ...) and real targets (n,) or (n, n_targets); -> float32 (x, y)."""
    x, y = check_examples(x), np.asarray(y)
    if y.shape[:1] != x.shape[:1] or y.ndim > 2:
        raise ValueError(f"targets must be shaped ({len(x)},) or ({len(x)}, k), got {y.shape}")
    k = 1 if y.ndim == 1 else y.shape[1]
    if k != n_targets:
        raise ValueError(
            f"targets have {k} columns but the model predicts {n_targets}; build the model "
            "with one output per target (two per target when the noise is learned)"
        )
    return float32_values(x, "inputs"), float32_values(y, "targets")


PredictFn = Callable[[PyTree, PyTree, jax.Array], jax.Array]  # (params, static, x) -> (n, k)
CheckFn = Callable[[PyTree, Any, Any], tuple[np.ndarray, np.ndarray]]  # (model, x, y) -> (x, y)


@dataclass(frozen=True)
class Likelihood:
    """The observation model an engine fits: per-example log-likelihood, the per-draw
    prediction kept for eval sets (class probabilities or means), and the data check."""

    name: str
    loglik: LogLikelihood  # (params, static, x (n, ...), y (n, ...)) -> (n,)
    predict: PredictFn
    check: CheckFn

    def describe(self) -> str:
        return self.name


def _check_categorical(model: PyTree, x, y) -> tuple[np.ndarray, np.ndarray]:
    return check_classification_data(x, y, n_classes=n_outputs(model, x))


CATEGORICAL = Likelihood("categorical", categorical_loglik, predict_probs, _check_categorical)


def gaussian_mean_log_std(
    outputs: jax.Array, noise_std: float | np.ndarray | None
) -> tuple[jax.Array, jax.Array]:
    """Model outputs (n, k) with a fixed noise_std (scalar or (k,)), or (n, 2k) = (means, log
    stds) when noise_std is None -> (means (n, k), log stds broadcastable to (n, k))."""
    if noise_std is None:
        k = outputs.shape[-1] // 2
        return outputs[..., :k], outputs[..., k:]
    return outputs, jnp.log(jnp.asarray(noise_std, outputs.dtype))


def gaussian_likelihood(noise_std: float | Sequence[float] | None = 1.0) -> Likelihood:
    """y_i ~ N(f(x_i), noise_std^2) independently per target, for models returning k means per
    example (noise_std a float, or one per target); noise_std=None learns the noise: the model
    returns 2k values per example, k means then k log standard deviations (heteroscedastic)."""
    if noise_std is None:
        return _gaussian_likelihood(None)
    noise = np.asarray(noise_std, np.float32)
    if noise.ndim > 1 or not (np.all(np.isfinite(noise)) and np.all(noise > 0)):
        raise ValueError(
            f"noise_std must be finite and > 0, a float or one per target (or None to learn "
            f"it), got {noise}"
        )
    return _gaussian_likelihood((noise.ndim, tuple(noise.ravel().tolist())))


@functools.cache  # one object per noise setting: programs keyed on it are compiled once
def _gaussian_likelihood(setting: tuple[int, tuple[float, ...]] | None) -> Likelihood:
    """gaussian_likelihood for a checked setting: None, or (ndim, noise stds)."""
    noise_std = None
    if setting is not None:
        noise_std = np.asarray(setting[1], np.float32).reshape((-1,) if setting[0] else ())
    per_mean = 1 if noise_std is not None else 2

    def loglik(params: PyTree, static: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:  # (n,)
        model = combine_params(params, static)
        outputs = jax.vmap(model)(x).astype(jnp.float32)  # (n, k * per_mean)
        mean, log_std = gaussian_mean_log_std(outputs, noise_std)
        z = (y.reshape(len(y), -1) - mean) * jnp.exp(-log_std)  # (n, k)
        return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)

    def predict(params: PyTree, static: PyTree, x: jax.Array) -> jax.Array:  # (n, k)
        outputs = jax.vmap(combine_params(params, static))(x)
        return gaussian_mean_log_std(outputs, noise_std)[0]

    def check(model: PyTree, x, y) -> tuple[np.ndarray, np.ndarray]:
        n_out = n_outputs(model, x)
        if n_out % per_mean:
            raise ValueError(
                f"a Gaussian likelihood with learned noise needs 2 outputs per target (means, "
                f"then log stds); the model returns {n_out}"
            )
        if noise_std is not None and noise_std.ndim == 1 and len(noise_std) != n_out:
            raise ValueError(f"{len(noise_std)} noise_std values for a model with {n_out} outputs")
        return check_regression_data(x, y, n_targets=n_out // per_mean)

    shown = "learned" if noise_std is None else np.array2string(noise_std, precision=4)
    name = f"gaussian(noise_std={shown})"
    return Likelihood(name, loglik, predict, check)


def resolve_likelihood(likelihood: str | Likelihood) -> Likelihood:
    """A likelihood name ("categorical", or "gaussian" with unit noise) or a `Likelihood`."""
    if isinstance(likelihood, Likelihood):
        return likelihood
    if likelihood == "categorical":
        return CATEGORICAL
    if likelihood == "gaussian":
        return gaussian_likelihood(1.0)
    raise ValueError(
        f'likelihood must be "categorical", "gaussian" or a Likelihood (e.g. '
        f"gaussian_likelihood(noise_std=0.1)), got {likelihood!r}"
    )


def check_sequence_data(
    x, y, target_shape: tuple[int, ...], n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate inputs (n, ...) and targets (n, *target_shape): integers in [0, n_classes) when
    n_classes is given, else reals; -> (float32 x, int32 or float32 y)."""
    x, y = check_examples(x), np.asarray(y)
    expected = (len(x), *target_shape)
    if y.shape != expected:
        raise ValueError(
            f"targets must be shaped {expected}, one per model output position, got {y.shape}"
        )
    if n_classes is None:
        return float32_values(x, "inputs"), float32_values(y, "targets")
    return float32_values(x, "inputs"), check_labels(y, n_classes, "targets")


def sequence_categorical_loglik(
    params: PyTree, static: PyTree, x: jax.Array, y: jax.Array
) -> jax.Array:  # (n,)
    """sum_t log p(y_it | x_i, params) for a model returning logits (T, k) (or (..., k)) for one
    example, e.g. a character LM's next-token logits, with integer targets y (n, T)."""
    logits = jax.vmap(combine_params(params, static))(x).astype(jnp.float32)  # (n, T, k)
    ids = y.astype(jnp.int32)[..., None]  # (n, T, 1)
    picked = jnp.take_along_axis(jax.nn.log_softmax(logits), ids, axis=-1)[..., 0]  # (n, T)
    return jnp.sum(picked.reshape(len(picked), -1), axis=-1)


def _check_sequence_categorical(model: PyTree, x, y) -> tuple[np.ndarray, np.ndarray]:
    *positions, n_classes = output_shape(model, x)
    return check_sequence_data(x, y, tuple(positions), n_classes)


SEQUENCE_CATEGORICAL = Likelihood(
    "sequence_categorical",
    sequence_categorical_loglik,
    predict_probs,  # (n, T, k): softmax over the last axis
    _check_sequence_categorical,
)


def sequence_gaussian_likelihood(noise_std: float = 1.0) -> Likelihood:
    """y_i ~ N(f(x_i), noise_std^2) elementwise for a model returning an array of any shape per
    example (e.g. forecasts (horizon, channels)); targets y (n, *that shape); one fixed noise_std.
    The log-likelihood of an example sums over all its elements."""
    if not (np.isfinite(noise_std) and noise_std > 0):
        raise ValueError(f"noise_std must be a finite float > 0, got {noise_std}")
    log_norm = math.log(noise_std) + 0.5 * math.log(2 * math.pi)

    def loglik(params: PyTree, static: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:  # (n,)
        mean = jax.vmap(combine_params(params, static))(x).astype(jnp.float32)  # (n, ...)
        z = (y - mean).reshape(len(y), -1) / noise_std  # (n, m)
        return jnp.sum(-0.5 * z**2, axis=-1) - z.shape[-1] * log_norm

    def predict(params: PyTree, static: PyTree, x: jax.Array) -> jax.Array:  # (n, ...)
        return jax.vmap(combine_params(params, static))(x)

    def check(model: PyTree, x, y) -> tuple[np.ndarray, np.ndarray]:
        return check_sequence_data(x, y, output_shape(model, x))

    return Likelihood(f"sequence_gaussian(noise_std={noise_std:g})", loglik, predict, check)


@functools.cache  # one object per description: programs keyed on it are compiled once
def likelihood_from_description(text: str) -> Likelihood:
    """The built-in likelihood whose `describe()` is `text` (as saved in a Posterior's attrs)."""
    fixed = {"categorical": CATEGORICAL, "sequence_categorical": SEQUENCE_CATEGORICAL}
    if text in fixed:
        return fixed[text]
    match = re.fullmatch(r"(sequence_gaussian|gaussian)\(noise_std=(.*)\)", text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a built-in likelihood, so this posterior cannot rebuild it; pass "
            "per_draw= to predict_draws, or use each draw's model (posterior.draw(i))"
        )
    kind, value = match.groups()
    if kind == "sequence_gaussian":
        return sequence_gaussian_likelihood(float(value))
    if value == "learned":
        return gaussian_likelihood(None)
    numbers = [float(v) for v in value.strip("[]").split()]
    return gaussian_likelihood(numbers[0] if value[0] != "[" else numbers)
