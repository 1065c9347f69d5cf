"""Tests for bnn_shift.experiments.lm and the shared trainer (bnn_shift.experiments.training)."""

from __future__ import annotations

import math

import jax
import pandas as pd
import pytest

from bnn_shift.data import load_text
from bnn_shift.experiments.lm import (
    LMConfig,
    bits_per_char,
    build_lm,
    run_lm,
    structure_of,
)
from bnn_shift.experiments.training import TrainSettings, schedule
from bnn_shift.models import forward_flops_per_token

TEXT = "the quick brown fox jumps over the lazy dog. " * 80


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "fox.txt"
    path.write_text(TEXT)
    return path


def test_structures_of_the_variants():
    config = LMConfig(context_length=64, d_model=32, n_heads=1, mlr_ranks=(16, 8, 8))
    assert structure_of("standard", config) == ("full", {})
    assert structure_of("sliding-window", config) == ("sliding_window", {"window": 32})
    assert structure_of("global-window", config)[1] == {"global_dims": 16, "window": 32}
    assert structure_of("mlr", config) == ("mlr", {"ranks": (16, 8, 8), "normalize": "count"})
    with pytest.raises(ValueError, match="must sum to the head dim"):
        LMConfig(d_model=32, n_heads=2, mlr_ranks=(8, 4))
    with pytest.raises(ValueError, match="unknown LM variants"):
        LMConfig(variants=("rnn",))


def test_schedule_warmup_then_constant_or_cosine():
    constant = schedule(TrainSettings(steps=100, learning_rate=1.0, warmup=10, final_lr_ratio=None))
    assert float(constant(0)) == 0.0 and float(constant(5)) == pytest.approx(0.5)
    assert float(constant(10)) == float(constant(99)) == 1.0
    cosine = schedule(TrainSettings(steps=100, learning_rate=1.0, warmup=10, final_lr_ratio=0.1))
    assert float(cosine(10)) == pytest.approx(1.0) and float(cosine(100)) == pytest.approx(0.1)


def test_uniform_model_scores_log2_vocab_bits(corpus):
    data = load_text(corpus)
    config = LMConfig(
        variants=("standard",), d_model=8, n_heads=1, depth=1, context_length=16, mlr_ranks=(8,)
    )
    model = build_lm(config, "standard", data.vocab_size)
    model = jax.tree.map(lambda a: a * 0 if hasattr(a, "shape") else a, model)  # logits all 0
    x, y = data.eval_windows("val", 16, 4)
    assert bits_per_char(model, x, y) == pytest.approx(math.log2(data.vocab_size), rel=1e-5)


def test_training_learns_the_repeated_sentence(corpus, tmp_path):
    config = LMConfig(
        path=str(corpus),
        variants=("mlr",),
        d_model=8,
        n_heads=2,
        depth=1,
        context_length=16,
        mlr_ranks=(2, 1, 1),
        steps=40,
        batch_size=8,
        learning_rate=1e-2,
        optimizer="adamw",  # muP's base/fan_in multipliers are huge at width 8
        warmup=4,
        n_eval_windows=8,
        eval_every=20,
    )
    result = run_lm(config, out_dir=tmp_path, progress=False)
    table = pd.read_csv(tmp_path / "results.csv").set_index("variant")
    assert list(table.index) == ["mlr"]
    uniform = math.log2(result.vocab_size)
    assert table.val_bpc["mlr"] < 0.8 * uniform, table.val_bpc  # learned something
    full = forward_flops_per_token(build_lm(config, "standard", result.vocab_size).transformer, 16)
    assert table.flops_per_token["mlr"] < full
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert sorted(set(curves.step)) == [20, 40]
    assert (tmp_path / "lm.png").stat().st_size > 0
