"""Tests for bnn_shift.attention.factory: building layers from names."""

from __future__ import annotations

import equinox as eqx
import jax
import pytest

from bnn_shift.attention import (
    SCORERS,
    STRUCTURES,
    BilinearMLRScorer,
    GlobalSlidingWindow,
    SequenceMLR,
    make_attention,
    make_scorer,
    make_structure,
)


def test_names_cover_every_scorer_and_structure():
    assert set(SCORERS) == {"standard", "dense", "btt", "bilinear_mlr"}
    assert set(STRUCTURES) == {"full", "sliding_window", "global_sliding_window", "mlr"}
    gswa = make_structure("global_sliding_window", global_dims=2, window=3, causal=False)
    assert gswa == GlobalSlidingWindow(2, 3, causal=False)


def test_make_attention_passes_options_through():
    layer = eqx.filter_eval_shape(
        make_attention,
        8,
        2,
        key=jax.random.key(0),
        scorer="bilinear_mlr",
        structure="mlr",
        scorer_options={"ranks": (2, 2)},
        structure_options={"ranks": (2, 1, 1), "normalize": "count"},
    )  # shapes only: nothing is drawn
    assert isinstance(layer.scorer, BilinearMLRScorer) and layer.scorer.ranks == (2, 2)
    assert layer.structure == SequenceMLR((2, 1, 1), normalize="count")
    assert eqx.filter_eval_shape(make_scorer, "standard", 8, 2, key=jax.random.key(0)).head_dim == 4


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        make_scorer("linformer", 8, 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="'mlr'"):
        make_structure("ring")
