"""In-context linear regression: error at the last position vs non-embedding compute
(Garg et al. 2022 task; Kuang et al. 2025 claim, REFERENCE §2.8-2.9).

Each sequence draws w ~ N(0, I_d) and n = points_per_dim·d points x_i ~ N(0, I/d),
y_i = wᵀx_i (so y has unit variance and predicting 0 scores 1). An `ICLRegressor` is trained
on fresh sequences every step (squared error averaged over all positions), then scored on a
fixed evaluation set by the squared error at every position, above all the last one (with
n - 1 >= d earlier pairs, least squares is exact there). Compute is non-embedding forward FLOPs
per token × batch × n × 2 tokens × steps. Variants: standard attention with H heads (rank
D/H) and with one head (rank D), bilinear BTT (rank 1) and bilinear MLR with H heads.
The claim under test: BTT and MLR beat standard attention at every fixed compute once
d_input exceeds the head rank D/H.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from bnn_shift.experiments.training import check_names, check_optimizer, fit, train_settings
from bnn_shift.models import ICLRegressor, forward_flops_per_token
from bnn_shift.models.transformer import matrix_params

CURRICULUM_START = 4  # active input dims at step 0 (Garg et al.'s curriculum starts at d = 4)


def mlr_ranks(head_dim: int) -> tuple[int, ...]:
    """Bilinear-MLR level ranks for a head dim r, after the paper's 8|4|4|16 at r = 32:
    r/4, r/8, r/8, then the rest; levels that would get rank 0 are dropped."""
    ranks = [max(head_dim // 4, 1), max(head_dim // 8, 1), max(head_dim // 8, 1)]
    while ranks and sum(ranks) >= head_dim:
        ranks.pop()
    return (*ranks, head_dim - sum(ranks))


def variant_options(variant: str, d_model: int, n_heads: int) -> dict:
    """Model keyword arguments (n_heads, scorer, scorer_options) of a named variant."""
    if variant == "standard":
        return {"n_heads": n_heads, "scorer": "standard"}
    if variant == "standard-1head":
        return {"n_heads": 1, "scorer": "standard"}
    if variant == "btt":
        return {"n_heads": n_heads, "scorer": "btt", "scorer_options": {"rank": 1}}
    if variant == "bilinear-mlr":
        ranks = mlr_ranks(d_model // n_heads)
        return {"n_heads": n_heads, "scorer": "bilinear_mlr", "scorer_options": {"ranks": ranks}}
    raise ValueError(f"unknown ICL variant {variant!r}; choose from {', '.join(VARIANTS)}")


VARIANTS = ("standard", "standard-1head", "btt", "bilinear-mlr")


@dataclass
class ICLConfig:
    """Every setting of an `icl` run (CPU-sized defaults)."""

    d_inputs: tuple[int, ...] = (16,)
    widths: tuple[int, ...] = (32, 64)  # d_model values: the compute axis
    variants: tuple[str, ...] = VARIANTS
    n_heads: int = 8  # heads of every variant except standard-1head
    depth: int = 2
    points_per_dim: int = 2  # n = 2·d points, T = 4·d tokens, as in the paper
    steps: int = 200
    batch_size: int = 32
    learning_rate: float = 3e-3
    optimizer: str = "adamw"  # "adamw": one rate for every tensor; "mup": per-tensor muP rates
    warmup: int = 40
    curriculum: float = 0.3  # fraction of steps over which the active dims grow from 4 to d
    n_eval: int = 512
    seed: int = 0

    def __post_init__(self):
        check_names(self.variants, VARIANTS, "ICL variants")
        bad = [w for w in self.widths if w % self.n_heads]
        if bad:
            raise ValueError(f"widths {bad} are not divisible by n_heads={self.n_heads}")
        if not self.d_inputs or min(self.d_inputs) < 1 or self.points_per_dim < 1:
            raise ValueError("need d_inputs >= 1 and points_per_dim >= 1")
        check_optimizer(self.optimizer)
        if not 0.0 <= self.curriculum < 1.0:
            raise ValueError(f"curriculum must lie in [0, 1), got {self.curriculum}")


def active_dims(step: int, steps: int, d_input: int, curriculum: float) -> int:
    """Input dims in use at `step`: grows linearly from 4 to d over the curriculum."""
    start = min(CURRICULUM_START, d_input)
    span = curriculum * steps
    if span <= 0 or step >= span:
        return d_input
    return start + int((d_input - start + 1) * step / span)


def regression_batch(
    rng: np.random.Generator, batch: int, n_points: int, d_input: int, active: int | None = None
) -> np.ndarray:
    """(batch, n, d + 1) points of random linear tasks: x ~ N(0, I/a) on the first a = active
    dims (zeros beyond), w ~ N(0, I), y = wᵀx."""
    active = d_input if active is None else active
    xs = np.zeros((batch, n_points, d_input), np.float32)
    xs[..., :active] = rng.standard_normal((batch, n_points, active)) / np.sqrt(active)
    w = rng.standard_normal((batch, d_input)).astype(np.float32)
    ys = np.einsum("bnd,bd->bn", xs, w)
    return np.concatenate([xs, ys[..., None]], axis=-1)


def least_squares_errors(points: np.ndarray) -> np.ndarray:
    """(b, n, d + 1) -> (n,) mean squared error of the min-norm least-squares prediction of y_i
    from the i earlier pairs (0 earlier pairs: predict 0)."""
    d = points.shape[-1] - 1
    xs, ys = points[..., :d].astype(np.float64), points[..., d].astype(np.float64)
    errors = [np.mean(ys[:, 0] ** 2)]
    for i in range(1, xs.shape[1]):
        w = np.einsum("bdi,bi->bd", np.linalg.pinv(xs[:, :i]), ys[:, :i])  # (b, d)
        errors.append(np.mean((np.einsum("bd,bd->b", w, xs[:, i]) - ys[:, i]) ** 2))
    return np.asarray(errors)


def _squared_errors(model: ICLRegressor, points: jax.Array) -> jax.Array:  # (b, n)
    d = points.shape[-1] - 1
    return (jax.vmap(model)(points) - points[..., d]) ** 2


def _loss(model: ICLRegressor, points: jax.Array) -> jax.Array:
    return jnp.mean(_squared_errors(model, points))


def position_errors(model: ICLRegressor, points: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(b, n, d + 1) -> (n,) mean squared error at every position."""
    errors = jax.jit(_squared_errors)
    total = sum(
        np.asarray(errors(model, jnp.asarray(points[i : i + chunk]))).sum(axis=0)
        for i in range(0, len(points), chunk)
    )
    return total / len(points)


def run_one(
    config: ICLConfig, d_input: int, variant: str, d_model: int, progress: bool
) -> tuple[dict, np.ndarray]:
    """Train and score one (d_input, variant, width): -> a results row and the error curve."""
    n_points = config.points_per_dim * d_input
    key = jax.random.key(config.seed)
    model = ICLRegressor(
        d_input,
        n_points,
        d_model=d_model,
        depth=config.depth,
        key=key,
        **variant_options(variant, d_model, config.n_heads),
    )
    settings = train_settings(config, final_lr_ratio=0.1)

    def batch(step: int) -> np.ndarray:
        active = active_dims(step, config.steps, d_input, config.curriculum)
        rng = np.random.default_rng([config.seed, d_input, step])
        return regression_batch(rng, config.batch_size, n_points, d_input, active)

    eval_points = eval_set(config, d_input)
    trained = fit(
        model,
        _loss,
        batch,
        settings,
        key=jax.random.fold_in(key, 1),
        progress=progress,
        desc=f"icl d={d_input} {variant} D={d_model}",
    )
    curve = position_errors(trained.model, eval_points)
    seq_len = 2 * n_points
    per_token = forward_flops_per_token(trained.model.transformer, seq_len)
    row = {
        "d_input": d_input,
        "variant": variant,
        "d_model": d_model,
        "n_heads": variant_options(variant, d_model, config.n_heads)["n_heads"],
        "non_embedding_params": matrix_params(trained.model.transformer),
        "flops_per_token": per_token,
        "train_compute": per_token * config.batch_size * seq_len * config.steps,
        "last_error": float(curve[-1]),
        "zero_predictor_error": float(np.mean(eval_points[:, -1, d_input] ** 2)),
        "mean_error": float(np.mean(curve)),
        "final_train_loss": float(np.mean(trained.losses[-20:])),
        "seconds": trained.seconds,
    }
    return row, curve


def eval_set(config: ICLConfig, d_input: int) -> np.ndarray:
    """The fixed evaluation sequences for one d_input (a seed stream apart from training)."""
    rng = np.random.default_rng([config.seed, d_input, 10**9])
    return regression_batch(rng, config.n_eval, config.points_per_dim * d_input, d_input)


@dataclass
class ICLResult:
    config: ICLConfig
    table: pd.DataFrame  # one row per (d_input, variant, d_model)
    curves: pd.DataFrame  # d_input, variant, d_model, position, error (incl. least squares)


def run_icl(
    config: ICLConfig,
    out_dir: str | Path | None = None,
    progress: bool = True,
    on_row: Callable[[dict], None] | None = None,
) -> ICLResult:
    """Every (d_input, variant, width) of the config; tables and a plot to out_dir."""
    rows, curves = [], []
    grid = [(d, v, w) for d in config.d_inputs for v in config.variants for w in config.widths]
    for d_input, variant, d_model in tqdm(grid, desc="icl runs", disable=not progress):
        row, curve = run_one(config, d_input, variant, d_model, progress)
        rows.append(row)
        curves.append(_curve_frame(d_input, variant, d_model, curve))
        if on_row is not None:
            on_row(row)
    for d_input in config.d_inputs:
        baseline = least_squares_errors(eval_set(config, d_input)[: min(256, config.n_eval)])
        curves.append(_curve_frame(d_input, "least-squares", 0, baseline))
    result = ICLResult(config, pd.DataFrame(rows), pd.concat(curves, ignore_index=True))
    if out_dir is not None:
        write_results(result, Path(out_dir))
    return result


def _curve_frame(d_input: int, variant: str, d_model: int, curve: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "d_input": d_input,
            "variant": variant,
            "d_model": d_model,
            "position": np.arange(1, len(curve) + 1),
            "error": curve,
        }
    )


def _panels(frame: pd.DataFrame) -> tuple[Figure, list]:
    """A figure with one axes per d_input of `frame`, side by side, in increasing d_input."""
    n = frame.d_input.nunique()
    fig = Figure(figsize=(4.5 * n, 3.6), layout="constrained")
    return fig, list(fig.subplots(1, n, squeeze=False)[0])


def plot_icl(table: pd.DataFrame) -> Figure:
    """Last-position error vs non-embedding training compute, one panel per d_input."""
    fig, axes = _panels(table)
    for ax, (d_input, part) in zip(axes, table.groupby("d_input")):
        for variant, rows in part.groupby("variant", sort=False):
            rows = rows.sort_values("train_compute")
            ax.plot(rows.train_compute, rows.last_error, "o-", label=variant)
            for _, r in rows.iterrows():
                ax.annotate(f"D={r.d_model}", (r.train_compute, r.last_error), fontsize=7)
        ax.axhline(1.0, color="grey", ls=":", lw=1, label="predict 0")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("non-embedding training FLOPs")
        ax.set_ylabel("squared error at the last position")
        ax.set_title(f"d_input = {d_input}")
    axes[0].legend(fontsize=8)
    return fig


def plot_curves(curves: pd.DataFrame) -> Figure:
    """Error vs number of in-context examples for the widest model of each variant."""
    fig, axes = _panels(curves)
    for ax, (d_input, part) in zip(axes, curves.groupby("d_input")):
        for variant, rows in part.groupby("variant", sort=False):
            rows = rows[rows.d_model == rows.d_model.max()]
            label = variant if variant == "least-squares" else f"{variant} D={rows.d_model.max()}"
            ax.plot(rows.position - 1, rows.error, label=label)
        ax.axvline(d_input, color="grey", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("in-context examples")
        ax.set_ylabel("squared error")
        ax.set_title(f"d_input = {d_input}")
    axes[0].legend(fontsize=8)
    return fig


def write_results(result: ICLResult, out: Path) -> None:
    """results.csv, curves.csv, icl.png, curves.png, settings.json."""
    out.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(out / "results.csv", index=False)
    result.curves.to_csv(out / "curves.csv", index=False)
    plot_icl(result.table).savefig(out / "icl.png", dpi=120)
    plot_curves(result.curves).savefig(out / "curves.png", dpi=120)
    (out / "settings.json").write_text(json.dumps(dataclasses.asdict(result.config), indent=2))
