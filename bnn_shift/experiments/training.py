"""Minibatch training of the attention models with muP AdamW (REFERENCE §2.7), shared by the
`icl`, `lm` and `forecast` experiments.

`fit` re-draws the model by its muP rules (`mup_init`, with the model's `mup_options()`), then
runs `steps` jitted AdamW updates with per-tensor learning rates (`mup_adamw`) under a linear
warmup followed by a cosine decay to `final_lr_ratio`·lr (or a constant rate when it is None),
with gradient clipping. Batches come from a function of the step index, so a run is a pure
function of its seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import equinox as eqx
import jax
import numpy as np
import optax
from tqdm.auto import tqdm

from bnn_shift.attention import mup_adamw, mup_init
from bnn_shift.typing import PyTree

LossFn = Callable[[PyTree, Any], jax.Array]  # (model, batch) -> scalar


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one run."""

    steps: int = 500
    learning_rate: float = 1e-3  # muP base rate: matrices train at lr·768/fan_in
    warmup: int = 50
    final_lr_ratio: float | None = 0.1  # cosine to lr·ratio; None = constant after warmup
    clip: float | None = 1.0  # global gradient-norm clip
    mup: bool = True  # muP: re-draw by the muP rules, per-tensor rates; False: plain AdamW

    def __post_init__(self):
        if self.steps < 1 or self.warmup < 0 or self.learning_rate <= 0:
            raise ValueError(
                f"need steps >= 1, warmup >= 0 and learning_rate > 0; got {self.steps}, "
                f"{self.warmup}, {self.learning_rate}"
            )


TRAINING_OPTIMIZERS = ("mup", "adamw")


def train_settings(config: Any, final_lr_ratio: float | None = 0.1) -> TrainSettings:
    """The `TrainSettings` of an experiment config with steps, learning_rate, warmup and
    optimizer ("mup" or "adamw") fields."""
    return TrainSettings(
        steps=config.steps,
        learning_rate=config.learning_rate,
        warmup=config.warmup,
        final_lr_ratio=final_lr_ratio,
        mup=config.optimizer == "mup",
    )


def check_names(names: tuple[str, ...], known: tuple[str, ...], what: str) -> None:
    """Every name must be one of `known` (e.g. a run's variants)."""
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; choose from {', '.join(known)}")


def check_optimizer(name: str) -> None:
    if name not in TRAINING_OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {name!r}; choose from {', '.join(TRAINING_OPTIMIZERS)}"
        )


def check_heads(d_model: int, n_heads: int, mlr_ranks: tuple[int, ...] | None = None) -> None:
    """d_model must split into n_heads equal heads; MLR level ranks (when the run has an MLR
    variant) must sum to the head dim."""
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
    head_dim = d_model // n_heads
    if mlr_ranks is not None and sum(mlr_ranks) != head_dim:
        raise ValueError(
            f"mlr_ranks {mlr_ranks} sum to {sum(mlr_ranks)}, but must sum to the head dim "
            f"d_model/n_heads = {head_dim}"
        )


@dataclass
class TrainResult:
    model: PyTree
    losses: np.ndarray  # (steps,) training loss per step
    evals: list[tuple[int, float]] = field(default_factory=list)  # (step, eval_fn value)
    seconds: float = 0.0


def schedule(settings: TrainSettings) -> optax.Schedule:
    """Linear warmup to lr, then cosine to lr·final_lr_ratio (or constant)."""
    lr, warmup = settings.learning_rate, min(settings.warmup, settings.steps - 1)
    if settings.final_lr_ratio is None:
        ramp = optax.linear_schedule(0.0, lr, max(warmup, 1))
        return optax.join_schedules([ramp, optax.constant_schedule(lr)], [warmup])
    return optax.warmup_cosine_decay_schedule(
        0.0, lr, max(warmup, 1), settings.steps, end_value=lr * settings.final_lr_ratio
    )


def clipped_adamw(model: PyTree, settings: TrainSettings) -> optax.GradientTransformation:
    """Clip (optional) then AdamW: muP per-tensor learning rates, or one rate for all."""
    if settings.mup:
        options = model.mup_options() if hasattr(model, "mup_options") else {}
        adamw = mup_adamw(model, schedule(settings), **options)
    else:
        adamw = optax.adamw(schedule(settings), b1=0.9, b2=0.95, weight_decay=0.0)
    return (
        adamw
        if settings.clip is None
        else optax.chain(optax.clip_by_global_norm(settings.clip), adamw)
    )


def fit(
    model: PyTree,
    loss_fn: LossFn,
    batch_fn: Callable[[int], Any],
    settings: TrainSettings,
    *,
    key: jax.Array,
    eval_fn: Callable[[PyTree], float] | None = None,
    eval_every: int = 0,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Train `model` on batch_fn(0), batch_fn(1), ...; eval_fn(model) every eval_every steps
    and after the last one (when given). Raises on a non-finite loss."""
    if settings.mup:
        model = mup_init(model, key, **getattr(model, "mup_options", dict)())
    optimizer = clipped_adamw(model, settings)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = optimizer.init(params)

    @jax.jit
    def step(params, state, batch):
        def objective(p):
            return loss_fn(eqx.combine(p, static), batch)

        loss, grads = jax.value_and_grad(objective)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    losses, evals = [], []
    started = time.perf_counter()
    bar = tqdm(range(settings.steps), desc=desc, disable=not progress, unit="step", leave=False)
    for i in bar:
        params, state, loss = step(params, state, batch_fn(i))
        losses.append(float(loss))
        if not np.isfinite(losses[-1]):
            raise FloatingPointError(
                f"{desc}: the training loss became {losses[-1]} at step {i}; lower the "
                "learning rate"
            )
        last = i == settings.steps - 1
        if eval_fn is not None and ((eval_every and (i + 1) % eval_every == 0) or last):
            evals.append((i + 1, float(eval_fn(eqx.combine(params, static)))))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", eval=f"{evals[-1][1]:.4f}")
    model = eqx.combine(params, static)
    return TrainResult(model, np.asarray(losses), evals, time.perf_counter() - started)
