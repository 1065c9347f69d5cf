"""Subspace training and quantisation-aware training with optax (REF 3.1-3.2).

Both minimise the mean cross-entropy plus -log p(θ)/n, where p is an optional regulariser (any
`bnn_shift` prior: the MAP objective restricted to the subspace). The regulariser only chooses
the hypothesis; the PAC-Bayes prior is the code-length prior, whatever the regulariser is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from bnn_shift.bounds.quantize import quantize
from bnn_shift.bounds.subspace import Subspace
from bnn_shift.inference.checkpoint import data_digest, load_run_state, save_run_state
from bnn_shift.inference.likelihood import check_classification_data
from bnn_shift.models.params import combine_params
from bnn_shift.priors.base import Prior
from bnn_shift.typing import PyTree

EVAL_BATCH = 8192
Loss = Callable[[PyTree, jax.Array, jax.Array], jax.Array]


def _cross_entropy(model: PyTree, xb: jax.Array, yb: jax.Array) -> jax.Array:
    logits = jax.vmap(model)(xb).astype(jnp.float32)  # (b, k)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], axis=1))


def _objective(subspace: Subspace, regulariser: Prior | None, n: int, offset) -> Loss:
    """(trainable, xb, yb) -> mean CE - log p(θ)/n, θ = θ₀ + P·offset(trainable)."""

    def loss(trainable, xb, yb):
        params = subspace.params(offset(trainable))
        value = _cross_entropy(combine_params(params, subspace.static), xb, yb)
        if regulariser is not None:
            value = value - regulariser.log_prob(params) / n
        return value

    return loss


def _run(
    loss: Loss,
    trainable: PyTree,
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    progress: bool,
    desc: str,
    run_dir: Path | None = None,
    fingerprint: dict | None = None,
) -> tuple[PyTree, np.ndarray]:
    """Adam with a warmup-cosine schedule over shuffled minibatches, one jitted call per step.

    The loop over steps stays in Python on purpose: XLA:CPU runs convolutions inside a compiled
    loop about 5x slower than outside one (docs/benchmarks.md), and a step is long enough that
    dispatching it costs nothing by comparison.
    run_dir: checkpoint (trainable, optimiser state, losses) after every epoch; a call with the
    same settings (`fingerprint` plus this function's own and the data's digest) resumes, and
    ends where an uninterrupted run would.
    """
    x, y = check_classification_data(x, y, n_classes=int(np.max(y)) + 1)
    n = len(x)
    if n_epochs < 1:
        raise ValueError(f"{desc}: n_epochs must be >= 1, got {n_epochs}")
    if not learning_rate > 0:
        raise ValueError(f"{desc}: learning_rate must be > 0, got {learning_rate}")
    batch = min(int(batch_size), n)
    if batch < 1:
        raise ValueError(f"{desc}: batch_size must be >= 1, got {batch_size}")
    steps = n // batch
    total = n_epochs * steps
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, warmup_steps=max(1, min(steps, total // 10)), decay_steps=total
    )
    opt = optax.adam(schedule)
    xs, ys = jnp.asarray(x), jnp.asarray(y)

    @jax.jit
    def step(trainable, opt_state, idx):  # idx (batch,)
        value, grads = jax.value_and_grad(loss)(trainable, xs[idx], ys[idx])
        updates, opt_state = opt.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), opt_state, value

    rng = np.random.default_rng(seed)
    opt_state = opt.init(trainable)
    losses: list[float] = []
    if run_dir is not None:
        own = {"desc": desc, "n_epochs": n_epochs, "batch": batch, "seed": seed}
        fingerprint = dict(fingerprint or {}, **own, learning_rate=learning_rate)
        fingerprint["data_sha256"] = data_digest(x, y)
        loaded = load_run_state(run_dir, (trainable, opt_state), fingerprint)
        if loaded is not None:
            state, arrays, done = loaded
            trainable, opt_state = jax.tree.map(jnp.asarray, state)
            losses = [float(v) for v in arrays["losses"][:done]]
    bar = tqdm(range(n_epochs), desc=desc, disable=not progress, unit="epoch")
    for epoch in bar:
        order = rng.permutation(n)[: steps * batch].reshape(steps, batch)  # drawn when resumed too
        if epoch < len(losses):
            continue
        values = []
        for idx in order:
            trainable, opt_state, value = step(trainable, opt_state, jnp.asarray(idx))
            values.append(value)
        losses.append(float(jnp.mean(jnp.stack(values))))
        if not np.isfinite(losses[-1]):
            raise FloatingPointError(
                f"{desc}: loss became {losses[-1]} at epoch {len(losses)}; lower the learning rate"
            )
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if run_dir is not None:
            state = jax.device_get((trainable, opt_state))
            save_run_state(run_dir, state, {"losses": np.asarray(losses)}, len(losses), fingerprint)
    return trainable, np.asarray(losses)


def fit_subspace(
    subspace: Subspace,
    x: np.ndarray,
    y: np.ndarray,
    *,
    regulariser: Prior | None = None,
    n_epochs: int = 10,
    batch_size: int = 256,
    learning_rate: float = 0.02,
    seed: int = 0,
    progress: bool = True,
    run_dir: Path | None = None,
) -> tuple[jax.Array, np.ndarray]:
    """Train w (d,) from 0 -> (w, per-epoch mean loss); run_dir: checkpoint every epoch and
    resume (the subspace's θ₀, dimension and regulariser are part of the run's identity)."""
    loss = _objective(subspace, regulariser, len(x), lambda w: w)
    w0 = jnp.zeros(subspace.dim, jnp.float32)
    return _run(
        loss,
        w0,
        x,
        y,
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        progress=progress,
        desc="subspace",
        run_dir=run_dir,
        fingerprint=_identity(subspace, regulariser),
    )


def fit_quantized(
    subspace: Subspace,
    w: jax.Array,
    levels: jax.Array,
    x: np.ndarray,
    y: np.ndarray,
    *,
    regulariser: Prior | None = None,
    n_epochs: int = 2,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
    run_dir: Path | None = None,
) -> tuple[jax.Array, jax.Array, np.ndarray]:
    """Quantisation-aware training of (w, levels) jointly -> (w, levels, per-epoch loss);
    run_dir as in `fit_subspace` (the starting w and levels join the identity)."""
    loss = _objective(subspace, regulariser, len(x), lambda t: quantize(t[0], t[1]))
    start = (jnp.asarray(w, jnp.float32), jnp.asarray(levels, jnp.float32))
    (w, levels), losses = _run(
        loss,
        start,
        x,
        y,
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed + 1,
        progress=progress,
        desc="quantised",
        run_dir=run_dir,
        fingerprint=_identity(subspace, regulariser) | {"start": data_digest(*start)},
    )
    return w, levels, losses


def _identity(subspace: Subspace, regulariser: Prior | None) -> dict:
    """What a resumed fit must share with the checkpoint beyond its training settings."""
    theta0 = [np.asarray(a) for a in jax.tree.leaves(subspace.theta0)]
    return {
        "theta0_sha256": data_digest(*theta0),
        "projector": [type(subspace.projector).__name__, subspace.dim, subspace.projector.seed],
        "regulariser": None if regulariser is None else regulariser.describe(),
    }


@eqx.filter_jit
def _count_wrong(model: PyTree, xb: jax.Array, yb: jax.Array) -> jax.Array:
    return jnp.sum(jnp.argmax(jax.vmap(model)(xb), axis=-1) != yb)


def error_rate(model: PyTree, x: np.ndarray, y: np.ndarray, batch_size: int = EVAL_BATCH) -> float:
    """0-1 error of `model` on (x, y), counted exactly in batches."""
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if len(x) == 0:
        raise ValueError("cannot compute an error rate on an empty data set")
    starts = range(0, len(x), batch_size)
    wrong = sum(
        int(_count_wrong(model, x[i : i + batch_size], y[i : i + batch_size])) for i in starts
    )
    return wrong / len(x)
