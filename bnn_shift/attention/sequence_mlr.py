"""Multi-level low-rank (MLR) attention over sequence positions (REFERENCE §2.4, §2.9).

The head dims split into level chunks of r_1, ..., r_L dims (Σ r_l = e). Level l cuts the
positions into p_l = 2^(l-1) contiguous blocks of T_l = T/2^(l-1) and adds the rank-r_l score
⟨q_i^(l), k_j^(l)⟩·scale_l (scale_l = 1/r_l) only for pairs in the same block:
S = Σ_l B_l ⊙ (Q_l K_lᵀ)·scale_l, optionally divided entrywise by n_ij (the number of levels
whose block holds both i and j) or by L. Level 1 is a global rank-r_1 term; nearby pairs get
more rank. One (causally masked) softmax over S, then A·V.

Computed block-diagonally, never as a masked T×T per level. Because the blocks are nested, a
pair (i, j) whose deepest shared block is at level d has the logit
⟨q_i[:R_d], k_j[:R_d]⟩ with R_d = r_1 + ... + r_d (per-level scales folded into q, and n_ij = d
for the count normalisation). So the T×T logits split into regions: at level d, the pairs of
sibling sub-blocks (size T_(d+1)) inside one level-d block, scored with the first R_d dims,
and at the finest level the diagonal blocks, scored with all e dims. `hierarchical_attention`
scores each region as a batched product of its sub-blocks, takes the softmax over all of them
at once by combining per-region log-sum-exp statistics, and multiplies each region by the
values of its key sub-block. When causal, regions whose keys all lie in the future are skipped
and only the finest diagonal blocks need a mask. Score cost: T·Σ_l T_l·r_l = T²·Σ_l r_l/2^(l-1)
multiply-adds per head (T²·e for standard attention), halved when causal. A decoder needs only
the keys of the current block of each level: a key cache of Σ_l T_l·r_l numbers per head.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from bnn_shift.attention.base import Structure
from bnn_shift.attention.bilinear_mlr import check_ranks
from bnn_shift.attention.structures import causal_mask, check_features, masked_softmax

NORMALIZE = ("none", "count", "levels")
Stats = tuple[jax.Array, jax.Array, jax.Array]


def nest_levels(blocks: Sequence[jax.Array]) -> jax.Array:
    """Sum block-diagonal levels into one (H, T, T) array (for inspecting the logits).

    blocks[l]: (H, p_l, T_l, T_l), level l's diagonal blocks; p_0 must be 1 and each block size
    must divide the previous one. Each finer level is added onto the diagonal sub-blocks of
    the next coarser one, so no level is expanded to T×T on its own.
    """
    acc = blocks[-1]
    for coarse in reversed(blocks[:-1]):
        h, p, size, _ = coarse.shape
        h_fine, p_fine, fine, _ = acc.shape
        m = p_fine // p
        grid = coarse.reshape(h, p, m, fine, m, fine)
        on_diagonal = jnp.eye(m, dtype=bool)[:, None, :, None]  # (m, 1, m, 1)
        inner = acc.reshape(h_fine, p, m, fine, 1, fine)
        acc = (grid + jnp.where(on_diagonal, inner, 0.0)).reshape(h, p, size, size)
    if acc.shape[1] != 1:
        raise ValueError("the coarsest level must be one block covering the whole sequence")
    return acc[:, 0]


def _piece(q, k, v, scale: float, mask, pad: tuple[int, int]) -> Stats:
    """Softmax statistics of one region: q (H, p, a, n, R) against k, v (H, p, a, n, ·).

    -> per global row: shift (H, T), sum of exponentials (H, T), weighted values (H, T, dv);
    `pad` adds (before, after) sub-blocks of rows the region does not reach.
    """
    h = q.shape[0]
    logits = scale * jnp.einsum("hpaie,hpaje->hpaij", q, k)  # (H, p, a, n, n)
    if mask is not None:
        logits = jnp.where(mask, logits, -jnp.inf)
    shift = jax.lax.stop_gradient(jnp.max(logits, axis=-1))  # (H, p, a, n)
    expd = jnp.exp(logits - shift[..., None])
    total = jnp.sum(expd, axis=-1)
    mixed = jnp.einsum("hpaij,hpajd->hpaid", expd, v)  # (H, p, a, n, dv)
    widths = ((0, 0), (0, 0), pad, (0, 0))
    shift = jnp.pad(shift, widths, constant_values=-jnp.inf).reshape(h, -1)
    total = jnp.pad(total, widths).reshape(h, -1)
    mixed = jnp.pad(mixed, (*widths, (0, 0))).reshape(h, total.shape[1], -1)
    return shift, total, mixed


def _combine(stats: Sequence[Stats]) -> jax.Array:
    """One softmax over all regions from their statistics -> (H, T, dv)."""
    top = jax.lax.stop_gradient(jnp.max(jnp.stack([s for s, _, _ in stats]), axis=0))  # (H, T)
    numerator, denominator = 0.0, 0.0
    for shift, total, mixed in stats:
        factor = jnp.exp(shift - top)  # 0 for rows the region does not reach
        numerator = numerator + factor[..., None] * mixed
        denominator = denominator + factor * total
    return numerator / denominator[..., None]


def hierarchical_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    sizes: Sequence[int],
    dims: Sequence[int],
    scales: Sequence[float],
    causal: bool,
) -> jax.Array:
    """Softmax attention over nested blocks, computed region by region -> (H, T, dv).

    q, k (H, T, e), v (H, T, dv). Level d (block size sizes[d], sizes[0] = T, each dividing the
    previous) scores pairs in different sub-blocks of one of its blocks with the first dims[d]
    feature dims times scales[d]; pairs in the same finest block use dims[-1] and scales[-1].
    SequenceMLR passes R_d = r_1 + ... + r_d; all dims = e gives standard softmax attention
    with causal block skipping (a fair baseline for the skipping alone).
    """
    h, t, _ = q.shape
    dv = v.shape[-1]
    stats = []
    for size, sub, dim, scale in zip(sizes[:-1], sizes[1:], dims[:-1], scales[:-1]):
        p, m = t // size, size // sub
        qs = q[..., :dim].reshape(h, p, m, sub, dim)
        ks = k[..., :dim].reshape(h, p, m, sub, dim)
        vs = v.reshape(h, p, m, sub, dv)
        for offset in range(1, m):  # keys `offset` sub-blocks before (and after) the queries
            before = qs[:, :, offset:], ks[:, :, : m - offset], vs[:, :, : m - offset]
            stats.append(_piece(*before, scale, None, (offset, 0)))
            if not causal:
                after = qs[:, :, : m - offset], ks[:, :, offset:], vs[:, :, offset:]
                stats.append(_piece(*after, scale, None, (0, offset)))
    size, dim = sizes[-1], dims[-1]
    blocks = (q[..., :dim], k[..., :dim], v)
    finest = [x.reshape(h, t // size, 1, size, x.shape[-1]) for x in blocks]
    stats.append(_piece(*finest, scales[-1], causal_mask(size) if causal else None, (0, 0)))
    return _combine(stats)


class SequenceMLR(Structure):
    """MLR attention over positions, one softmax, computed block-diagonally.

    ranks: (r_1, ..., r_L), summing to the feature dims e (the head dim of a standard scorer),
        e.g. the LM's (32, 8, 6, 4, 4, 4, 4, 2) at e = 64.
    block_sizes: per-level block sizes; default T/2^(l-1). When given, the first must equal T
        at call time and each must divide the previous one.
    normalize: "none"; "count" divides each logit by n_ij, the number of levels whose block
        holds both positions (the LM runs); "levels" divides everything by L.
    level_scales: per-level logit scales; default 1/r_l. The scorer's own scale is not used.
    Every block must be at least as long as its level's rank.
    """

    ranks: tuple[int, ...] = eqx.field(static=True, converter=tuple)
    block_sizes: tuple[int, ...] | None = eqx.field(static=True, default=None)
    normalize: str = eqx.field(static=True, default="none")
    causal: bool = eqx.field(static=True, default=True)
    level_scales: tuple[float, ...] | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_ranks(self.ranks, sum(self.ranks), "SequenceMLR")
        if self.normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {self.normalize!r}")
        n = len(self.ranks)
        for name, value in (("block_sizes", self.block_sizes), ("level_scales", self.level_scales)):
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries for {n} levels")

    @property
    def n_levels(self) -> int:
        return len(self.ranks)

    def sizes(self, seq_len: int) -> tuple[int, ...]:
        """The block size T_l of every level for a sequence of length T (validated)."""
        n = self.n_levels
        if self.block_sizes is None:
            if seq_len % 2 ** (n - 1):
                raise ValueError(
                    f"{n} MLR levels halve the sequence {n - 1} times, so T={seq_len} must be "
                    f"divisible by {2 ** (n - 1)}; pad the sequence or use fewer levels"
                )
            sizes = tuple(seq_len // 2**level for level in range(n))
        else:
            sizes = tuple(int(b) for b in self.block_sizes)
            if sizes[0] != seq_len:
                raise ValueError(f"the first block size {sizes[0]} must equal T={seq_len}")
            for coarse, fine in itertools.pairwise(sizes):
                if fine < 1 or coarse % fine:
                    raise ValueError(f"block sizes {sizes} must each divide the previous one")
        for level, (size, rank) in enumerate(zip(sizes, self.ranks), start=1):
            if size < rank:
                raise ValueError(
                    f"level {level} has blocks of {size} positions but rank {rank}; "
                    "blocks must be at least as long as the rank (use fewer levels or a longer T)"
                )
        return sizes

    def scales(self) -> tuple[float, ...]:
        return (
            self.level_scales
            if self.level_scales is not None
            else tuple(1.0 / r for r in self.ranks)
        )

    def _check(self, q: jax.Array, k: jax.Array) -> tuple[int, ...]:
        check_features(q, k, True)
        if q.shape[-1] != sum(self.ranks):
            raise ValueError(
                f"SequenceMLR ranks {self.ranks} sum to {sum(self.ranks)}, but the features "
                f"have {q.shape[-1]} dims; choose ranks that sum to the scorer's head dim"
            )
        return self.sizes(q.shape[1])

    def _region_scales(self) -> tuple[float, ...]:
        """The normalisation of the logits of pairs whose deepest shared level is l."""
        n = self.n_levels
        if self.normalize == "count":
            return tuple(1.0 / depth for depth in range(1, n + 1))
        return (1.0 / n if self.normalize == "levels" else 1.0,) * n

    def _scaled_queries(self, q: jax.Array) -> jax.Array:
        columns = jnp.concatenate(
            [jnp.full((r,), s, q.dtype) for r, s in zip(self.ranks, self.scales())]
        )
        return q * columns  # (H, T, e), level l's dims times scale_l

    def logits(self, q: jax.Array, k: jax.Array) -> jax.Array:
        """(H, T, e), (H, T, e) -> (H, T, T) summed, normalised logits before the mask.

        Assembled from the per-level blocks for inspection; `__call__` never forms it.
        """
        sizes = self._check(q, k)
        h, t, _ = q.shape
        blocks, start = [], 0
        for rank, size, scale in zip(self.ranks, sizes, self.scales()):
            ql = q[..., start : start + rank].reshape(h, t // size, size, rank)
            kl = k[..., start : start + rank].reshape(h, t // size, size, rank)
            blocks.append(scale * jnp.einsum("hpir,hpjr->hpij", ql, kl))  # (H, p_l, T_l, T_l)
            start += rank
        logits = nest_levels(blocks)
        if self.normalize == "count":
            ones = [jnp.ones((1, t // s, s, s), logits.dtype) for s in sizes]
            logits = logits / nest_levels(ones)  # n_ij
        elif self.normalize == "levels":
            logits = logits / self.n_levels
        return logits

    def weights(self, q: jax.Array, k: jax.Array, scale: float) -> jax.Array:
        """(H, T, T) softmax weights (materialised, for inspection); `scale` is ignored."""
        logits = self.logits(q, k)
        return masked_softmax(logits, causal_mask(q.shape[1]) if self.causal else None)

    def __call__(self, q: jax.Array, k: jax.Array, v: jax.Array, scale: float) -> jax.Array:
        """(H, T, e), (H, T, e), (H, T, dv) -> (H, T, dv); `scale` is ignored."""
        sizes = self._check(q, k)
        return hierarchical_attention(
            self._scaled_queries(q),
            k,
            v,
            sizes=sizes,
            dims=tuple(itertools.accumulate(self.ranks)),
            scales=self._region_scales(),
            causal=self.causal,
        )

    def score_flops(self, seq_len: int, dim: int) -> int:
        """2·T·Σ_l T_l·r_l (dim must equal Σ r_l)."""
        if dim != sum(self.ranks):
            raise ValueError(f"dim={dim} differs from the sum of the ranks {sum(self.ranks)}")
        return 2 * seq_len * sum(s * r for s, r in zip(self.sizes(seq_len), self.ranks))

    def key_cache_sizes(self, seq_len: int) -> tuple[int, ...]:
        """Per level, the keys a decoder must keep per head: T_l·r_l numbers."""
        return tuple(s * r for s, r in zip(self.sizes(seq_len), self.ranks))
