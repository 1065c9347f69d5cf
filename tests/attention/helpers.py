"""Shared tools for the attention tests: modules with numpy-drawn weights, float64 references.

Building a module with its own constructor compiles a random-number program per tensor shape,
which dominates the run time of small property tests; `random_module` instead fills the
module's skeleton with numpy draws, and `score_and_matrix` runs one compiled program.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

EPS32 = float(np.finfo(np.float32).eps)


def random_module(cls, *args, seed: int = 0, **kwargs):
    """cls(*args, **kwargs) with every float array drawn N(0, 1/last_dim) by numpy."""
    skeleton = eqx.filter_eval_shape(cls, *args, key=jax.random.key(0), **kwargs)
    rng = np.random.default_rng(seed)

    def fill(leaf):
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            return leaf
        scale = 1 / np.sqrt(leaf.shape[-1]) if leaf.shape else 1.0
        return jnp.asarray(scale * rng.standard_normal(leaf.shape), leaf.dtype)

    return jax.tree.map(fill, skeleton)


def tokens(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@eqx.filter_jit
def score_and_matrix(scorer, xq, xk):
    return scorer(xq, xk), scorer.matrix()


@eqx.filter_jit
def matrix_of(scorer):
    return scorer.matrix()


def assert_bilinear(scores, xq, matrix, xk) -> None:
    """scores (H, T, S) == xq_iᵀ M_h xk_j, to float32 rounding of the sum's absolute terms.

    A float32 dot product of n terms errs by at most ~n·eps·Σ|terms|; the forms here sum over
    D² terms in at most two contractions, so 4·D·eps·|xq|ᵀ|M||xk| bounds the error.
    """
    xq, xk, m = (np.asarray(a, np.float64) for a in (xq, xk, matrix))
    expected = np.einsum("ti,hij,sj->hts", xq, m, xk)
    bound = np.einsum("ti,hij,sj->hts", np.abs(xq), np.abs(m), np.abs(xk))
    error = np.abs(np.asarray(scores, np.float64) - expected)
    np.testing.assert_array_less(error, 4 * xq.shape[1] * EPS32 * bound + 1e-30)


def check_bilinear(scorer, t: int, s: int, seed: int) -> None:
    """The scorer's logits on random tokens equal the bilinear form of its matrix()."""
    xq, xk = tokens((t, scorer.d_model), seed), tokens((s, scorer.d_model), seed + 1)
    scores, matrix = score_and_matrix(scorer, xq, xk)
    assert scores.shape == (scorer.n_heads, t, s)
    assert matrix.shape == (scorer.n_heads, scorer.d_model, scorer.d_model)
    assert_bilinear(scores, xq, matrix, xk)


def numerical_rank(matrix) -> int:
    """Rank of a float32 matrix: singular values above D·eps32 of the largest."""
    sv = np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)
    return int(np.sum(sv > sv[0] * max(np.shape(matrix)) * EPS32))


def layer_norm(x, weight=None, eps: float = 1e-5):
    """Float64 LayerNorm over the last axis."""
    x = np.asarray(x, np.float64)
    centred = x - x.mean(-1, keepdims=True)
    y = centred / np.sqrt((centred**2).mean(-1, keepdims=True) + eps)
    return y if weight is None else y * np.asarray(weight, np.float64)


def check_key_norm(scorer, x: np.ndarray) -> np.ndarray:
    """Scores of a key-normalised bilinear scorer on x (T, D) equal scale * x_t . LN(M x_s);
    -> the unscaled matrix M (H, D, D) in float64."""
    m = np.asarray(scorer.matrix(), np.float64) / scorer.scale
    keys = layer_norm(np.einsum("hij,sj->hsi", m, x), scorer.key_norm.weight)
    expected = scorer.scale * np.einsum("ti,hsi->hts", x, keys)
    np.testing.assert_allclose(scorer(x), expected, rtol=1e-4, atol=1e-4)
    return m


def n_params(tree) -> int:
    """Number of float entries of a module or of its `eqx.filter_eval_shape` skeleton."""

    def is_float(a) -> bool:
        return eqx.is_inexact_array(a) or (
            isinstance(a, jax.ShapeDtypeStruct) and np.issubdtype(a.dtype, np.floating)
        )

    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree) if is_float(a))
