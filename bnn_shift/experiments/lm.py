"""Character-level language modelling: standard vs sliding-window vs global+window vs MLR
attention at equal model size and training tokens (Kuang et al. 2025, REFERENCE §2.5, §2.8).

Every variant is a `CharLM` with the same width, depth, heads, context, steps and batches
(the same seed gives the same windows); they differ only in which positions interact, so the
non-embedding FLOPs per token differ only in the attention term (reported). The metric is the
validation loss in bits per character on fixed consecutive windows of the held-out tail.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from bnn_shift.data import TextData, load_text
from bnn_shift.experiments.training import (
    check_heads,
    check_names,
    check_optimizer,
    fit,
    train_settings,
)
from bnn_shift.models import CharLM, forward_flops_per_token
from bnn_shift.models.transformer import matrix_params

VARIANTS = ("standard", "sliding-window", "global-window", "mlr")


@dataclass
class LMConfig:
    """Every setting of an `lm` run (CPU-sized defaults)."""

    path: str | None = None  # any UTF-8 text file; default tinyshakespeare (see load_text)
    variants: tuple[str, ...] = VARIANTS
    d_model: int = 64
    n_heads: int = 2  # head dim 32
    depth: int = 2
    context_length: int = 128
    window: int | None = None  # sliding window w; default T/2 (the paper's 512 at T = 1024)
    global_dims: int | None = None  # global+window: global head dims; default half
    mlr_ranks: tuple[int, ...] = (16, 4, 4, 4, 4)  # per-level ranks, summing to the head dim
    steps: int = 300
    batch_size: int = 16
    learning_rate: float = 3e-3
    optimizer: str = "mup"  # "mup": per-tensor muP rates (the paper's); "adamw": one rate
    warmup: int = 30
    n_eval_windows: int = 64
    eval_every: int = 100
    seed: int = 0

    def __post_init__(self):
        check_names(self.variants, VARIANTS, "LM variants")
        check_optimizer(self.optimizer)
        check_heads(self.d_model, self.n_heads, self.mlr_ranks if "mlr" in self.variants else None)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


def structure_of(variant: str, config: LMConfig) -> tuple[str, dict]:
    """The structure name and options of a variant (all use the standard scorer)."""
    window = config.window if config.window is not None else config.context_length // 2
    if variant == "standard":
        return "full", {}
    if variant == "sliding-window":
        return "sliding_window", {"window": window}
    if variant == "global-window":
        g = config.global_dims if config.global_dims is not None else config.head_dim // 2
        return "global_sliding_window", {"global_dims": g, "window": window}
    if variant == "mlr":
        return "mlr", {"ranks": config.mlr_ranks, "normalize": "count"}
    raise ValueError(f"unknown LM variant {variant!r}; choose from {', '.join(VARIANTS)}")


def build_lm(config: LMConfig, variant: str, vocab_size: int) -> CharLM:
    structure, options = structure_of(variant, config)
    return CharLM(
        vocab_size,
        config.context_length,
        d_model=config.d_model,
        n_heads=config.n_heads,
        depth=config.depth,
        key=jax.random.key(config.seed),
        structure=structure,
        structure_options=options,
    )


def _loss(model: CharLM, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    x, y = batch  # (b, T) ids each
    logits = jax.vmap(model)(x)  # (b, T, vocab)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def bits_per_char(model: CharLM, x: np.ndarray, y: np.ndarray, chunk: int = 32) -> float:
    """Mean next-character cross-entropy over windows x, y (n, T), in bits."""
    loss = jax.jit(_loss)
    total = sum(
        float(loss(model, (jnp.asarray(x[i : i + chunk]), jnp.asarray(y[i : i + chunk]))))
        * len(x[i : i + chunk])
        for i in range(0, len(x), chunk)
    )
    return total / len(x) / math.log(2)


def run_variant(
    config: LMConfig, data: TextData, variant: str, progress: bool
) -> tuple[dict, list]:
    """Train one variant; -> a results row and its (step, val bpc) curve."""
    model = build_lm(config, variant, data.vocab_size)
    x_val, y_val = data.eval_windows("val", config.context_length, config.n_eval_windows)
    settings = train_settings(config, final_lr_ratio=None)  # constant after warmup, as the paper

    def batch(step: int) -> tuple[np.ndarray, np.ndarray]:
        return data.batch(
            "train", config.batch_size, config.context_length, seed=config.seed, step=step
        )

    trained = fit(
        model,
        _loss,
        batch,
        settings,
        key=jax.random.key(config.seed + 1),
        eval_fn=lambda m: bits_per_char(m, x_val, y_val),
        eval_every=config.eval_every,
        progress=progress,
        desc=f"lm {variant}",
    )
    t = config.context_length
    per_token = forward_flops_per_token(trained.model.transformer, t)
    row = {
        "variant": variant,
        "val_bpc": trained.evals[-1][1],
        "train_bpc": float(np.mean(trained.losses[-20:])) / math.log(2),
        "non_embedding_params": matrix_params(trained.model.transformer),
        "flops_per_token": per_token,
        "train_compute": per_token * config.batch_size * t * config.steps,
        "seconds": trained.seconds,
    }
    return row, trained.evals


@dataclass
class LMResult:
    config: LMConfig
    corpus: str
    vocab_size: int
    table: pd.DataFrame  # one row per variant
    curves: pd.DataFrame  # variant, step, train_compute, val_bpc


def run_lm(config: LMConfig, out_dir: str | Path | None = None, progress: bool = True) -> LMResult:
    """Train every variant on the same batches; tables and a plot to out_dir."""
    data = load_text(config.path)
    rows, curves = [], []
    for variant in tqdm(config.variants, desc="lm variants", disable=not progress):
        row, evals = run_variant(config, data, variant, progress)
        rows.append(row)
        per_step = row["train_compute"] / config.steps
        curves += [
            {"variant": variant, "step": s, "train_compute": s * per_step, "val_bpc": v}
            for s, v in evals
        ]
    result = LMResult(config, data.name, data.vocab_size, pd.DataFrame(rows), pd.DataFrame(curves))
    if out_dir is not None:
        write_results(result, Path(out_dir))
    return result


def plot_lm(curves: pd.DataFrame, corpus: str) -> Figure:
    """Validation bits per character vs non-embedding training FLOPs, one line per variant."""
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.subplots()
    for variant, rows in curves.groupby("variant", sort=False):
        ax.plot(rows.train_compute, rows.val_bpc, "o-", label=variant)
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding training FLOPs")
    ax.set_ylabel("validation bits per character")
    ax.set_title(f"character LM on {corpus}")
    ax.legend(fontsize=8)
    return fig


def write_results(result: LMResult, out: Path) -> None:
    """results.csv, curves.csv, lm.png, settings.json."""
    out.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(out / "results.csv", index=False)
    result.curves.to_csv(out / "curves.csv", index=False)
    plot_lm(result.curves, result.corpus).savefig(out / "lm.png", dpi=120)
    settings = {
        **dataclasses.asdict(result.config),
        "resolved": {"corpus": result.corpus, "vocab_size": result.vocab_size},
    }
    (out / "settings.json").write_text(json.dumps(settings, indent=2))
