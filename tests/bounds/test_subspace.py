import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bnn_shift.bounds.subspace as subspace_mod
from bnn_shift.bounds.subspace import (
    PROJECTORS,
    DenseProjector,
    KroneckerProjector,
    KroneckerSumProjector,
    _kron_sizes,
    make_projector,
    make_subspace,
)
from bnn_shift.models import MLP, partition_params

# D a perfect square (k shrinks by one, the extra block is 13 x 0); general sizes, both forms
CASES = [(49, 9, False), (300, 40, False), (300, 40, True)]


def built(factory):
    """Build a projector and its dense matrix in one compiled call (one compile per test)."""
    return eqx.filter_jit(lambda: (lambda P: (P, P.materialize()))(factory()))()


def _block_diag(a, b):
    out = np.zeros((a.shape[0] + b.shape[0], a.shape[1] + b.shape[1]), np.float32)
    out[: a.shape[0], : a.shape[1]] = a
    out[a.shape[0] :, a.shape[1] :] = b
    return out


@pytest.mark.parametrize("D, d, orthonormal", CASES)
def test_kronecker_equals_the_dense_kronecker_product(D, d, orthonormal):
    P, M = built(lambda: KroneckerProjector(D, d, seed=3, orthonormal=orthonormal))
    dense = _block_diag(np.kron(P.R1, P.R2), np.asarray(P.extra))[np.asarray(P.perm)]
    np.testing.assert_allclose(M, dense, atol=1e-6)
    if orthonormal:  # the QR form has orthonormal columns
        np.testing.assert_allclose(M.T @ M, np.eye(d), atol=2e-6)


def test_kronecker_block_sizes_fit_for_every_d():
    for D in range(1, 40):
        for d in range(1, D + 1):
            k, m = _kron_sizes(D, d)
            assert m <= k and D - k * k >= d - m * m


def test_kronecker_sum_columns():
    P, M = built(lambda: KroneckerSumProjector(60, 5, seed=2))
    R1, R2, extra, perm = (np.asarray(a) for a in (P.R1, P.R2, P.extra, P.perm))
    k = R1.shape[0]
    ones = np.ones(k)
    cols = [
        np.concatenate(
            [(np.kron(R1[:, j], ones) + np.kron(ones, R2[:, j])) / np.sqrt(2 * k), extra[:, j]]
        )[perm]
        for j in range(5)
    ]
    np.testing.assert_allclose(M, np.stack(cols, 1), atol=1e-6)


def test_transpose_and_gradient_agree_with_the_matrix():
    D, d = 301, 12
    w = jax.random.normal(jax.random.key(0), (d,))
    v = jax.random.normal(jax.random.key(1), (D,))

    @jax.jit
    def run(w, v):  # every projector in one compiled call
        out = {}
        for kind in PROJECTORS:
            P = make_projector(kind, D, d, seed=1)
            grad = jax.grad(lambda w, P=P: jnp.vdot(P.matvec(w), v))(w)
            out[kind] = (P.materialize(), P.matvec(w), P.rmatvec(v), grad)
        return out

    for kind, (M, Pw, Ptv, grad) in run(w, v).items():
        np.testing.assert_allclose(Pw, M @ w, atol=1e-5, err_msg=kind)
        np.testing.assert_allclose(Ptv, M.T @ v, atol=1e-5, err_msg=kind)
        np.testing.assert_allclose(grad, M.T @ v, atol=1e-5, err_msg=kind)
        # unit column norms on average: E||col||² = 1 (exactly 1 for kron-qr); 12 columns
        mean_sq = float(np.mean(np.sum(np.asarray(M) ** 2, axis=0)))
        assert mean_sq == pytest.approx(1.0, abs=0.45), kind


def test_dense_is_generated_in_chunks_and_regenerated_in_the_backward_pass(monkeypatch):
    monkeypatch.setattr(subspace_mod, "CHUNK_ELEMENTS", 64)  # 8 rows of d = 8 per chunk
    P = DenseProjector(100, 8, seed=4)  # 13 chunks, the last one padded
    assert P.rows == 8
    v = jax.random.normal(jax.random.key(2), (100,))

    @jax.jit
    def run(v):
        grad = jax.grad(lambda w: jnp.vdot(P.matvec(w), v))(jnp.zeros(8))
        return P.materialize(), P.rmatvec(v), grad

    M, Ptv, grad = run(v)
    np.testing.assert_allclose(Ptv, M.T @ v, atol=1e-5)
    np.testing.assert_allclose(grad, M.T @ v, atol=1e-5)
    # the forward pass keeps no chunk of P for the backward pass (Kronecker keeps its factors)
    _, pullback = jax.vjp(P.matvec, jnp.zeros(8))
    assert all(np.size(leaf) < 8 * 8 for leaf in jax.tree.leaves(pullback))


def test_subspace_wraps_any_equinox_model():
    model = MLP(6, (5,), 3, key=jax.random.key(0))
    sub = make_subspace(model, 4, "sparse", seed=9)
    assert sub.n_params == 6 * 5 + 5 + 5 * 3 + 3 and sub.dim == 4
    same = sub.params(jnp.zeros(4))
    for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(partition_params(model)[0])):
        np.testing.assert_array_equal(a, b)
    moved = sub.model(jnp.ones(4))
    assert isinstance(moved, MLP)
    outputs = eqx.filter_jit(lambda a, b, x: (a(x), b(x)))(moved, model, jnp.ones(6))
    assert not np.allclose(*outputs)
    assert eqx.tree_equal(sub.static, partition_params(model)[1])


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="exceeds"):
        make_projector("dense", 10, 11)
    with pytest.raises(ValueError, match="unknown projector"):
        make_projector("fastfood", 10, 2)
    with pytest.raises(ValueError, match="positive"):
        make_projector("kron-qr", 10, 0)
