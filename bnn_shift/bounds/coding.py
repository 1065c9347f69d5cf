"""Arithmetic coding of quantised symbols and the message length the bound charges (REF 3.3).

The coder is the classic integer coder with a static model: the interval [low, high] lives on
`precision`-bit integers, every symbol narrows it by its count / total, and the interval is
rescaled whenever its leading bit is settled (E1/E2) or it straddles the midpoint inside the
middle half (E3, the underflow case). E3 defers bits as "pending" opposite bits that are
released by the next settled bit: this is how the coder resolves the carry that an
infinite-precision coder would propagate, without ever keeping more than `precision` bits.
The output is a prefix of the binary expansion of a number inside the final interval, so it
is at most d·Ĥ + 2 bits long (plus a negligible rounding loss).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

PRECISION = 32  # bits of the coder's integer interval


def _cumulative(counts: np.ndarray, precision: int) -> list[int]:
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D array, got shape {counts.shape}")
    if not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any():
        raise ValueError("counts must be non-negative integers (one per symbol)")
    total = int(counts.sum())
    if total >= 2 ** (precision - 2):
        raise ValueError(
            f"{total} symbols exceed what a {precision}-bit coder can model (< 2^{precision - 2}); "
            "raise `precision`"
        )
    return [0, *np.cumsum(counts, dtype=np.int64).tolist()]


def symbol_counts(symbols: np.ndarray, n_levels: int) -> np.ndarray:  # (n_levels,)
    """How often each symbol 0..n_levels-1 occurs in `symbols` (d,)."""
    symbols = np.asarray(symbols)
    if symbols.size and (symbols.min() < 0 or symbols.max() >= n_levels):
        raise ValueError(
            f"symbols must lie in [0, {n_levels}), got {symbols.min()}..{symbols.max()}"
        )
    return np.bincount(symbols.astype(np.int64), minlength=n_levels)


def arithmetic_encode(
    symbols: np.ndarray, counts: np.ndarray, precision: int = PRECISION
) -> np.ndarray:  # (n_bits,) uint8
    """Encode `symbols` (d,) with the static model p(s) = counts[s] / sum(counts) -> bits."""
    symbols = np.asarray(symbols, dtype=np.int64)
    cum = _cumulative(counts, precision)
    if symbols.size == 0:
        return np.zeros(0, np.uint8)
    if (np.asarray(counts)[symbols] == 0).any():
        raise ValueError("a symbol to encode has count 0 in the model; use symbol_counts(...)")
    total = cum[-1]
    full = (1 << precision) - 1
    half, quarter = 1 << (precision - 1), 1 << (precision - 2)
    low, high, pending = 0, full, 0
    out: list[int] = []

    def emit(bit: int) -> None:
        nonlocal pending
        out.append(bit)
        out.extend([1 - bit] * pending)
        pending = 0

    for s in symbols.tolist():
        width = high - low + 1
        high = low + width * cum[s + 1] // total - 1
        low = low + width * cum[s] // total
        while True:
            if high < half:
                emit(0)
            elif low >= half:
                emit(1)
                low, high = low - half, high - half
            elif low >= quarter and high < half + quarter:
                pending += 1
                low, high = low - quarter, high - quarter
            else:
                break
            low, high = 2 * low, 2 * high + 1
    pending += 1  # two more bits pick a point inside [low, high]
    emit(0 if low < quarter else 1)
    return np.asarray(out, np.uint8)


def arithmetic_decode(
    bits: np.ndarray, counts: np.ndarray, n_symbols: int, precision: int = PRECISION
) -> np.ndarray:  # (n_symbols,) int64
    """Invert `arithmetic_encode`: the `n_symbols` symbols coded in `bits` under `counts`."""
    cum = _cumulative(counts, precision)
    total = cum[-1]
    if n_symbols and total == 0:
        raise ValueError("cannot decode symbols with an all-zero count table")
    bits = np.asarray(bits, np.uint8).tolist()
    full = (1 << precision) - 1
    half, quarter = 1 << (precision - 1), 1 << (precision - 2)
    position = 0

    def next_bit() -> int:  # bits past the end read as 0
        nonlocal position
        position += 1
        return bits[position - 1] if position <= len(bits) else 0

    value = 0
    for _ in range(precision):
        value = 2 * value + next_bit()
    low, high = 0, full
    out = np.empty(n_symbols, np.int64)
    for i in range(n_symbols):
        width = high - low + 1
        target = ((value - low + 1) * total - 1) // width
        s = bisect.bisect_right(cum, target) - 1
        out[i] = s
        high = low + width * cum[s + 1] // total - 1
        low = low + width * cum[s] // total
        while True:
            if high < half:
                pass
            elif low >= half:
                low, high, value = low - half, high - half, value - half
            elif low >= quarter and high < half + quarter:
                low, high, value = low - quarter, high - quarter, value - quarter
            else:
                break
            low, high, value = 2 * low, 2 * high + 1, 2 * value + next_bit()
    return out


def empirical_entropy_bits(counts: np.ndarray) -> float:
    """d·Ĥ(p̂) in bits for the histogram `counts`: the ideal code length of the symbols."""
    counts = np.asarray(counts, np.float64)
    d = counts.sum()
    nz = counts[counts > 0]
    return max(0.0, float(-(nz * np.log2(nz / d)).sum())) if d else 0.0


@dataclass(frozen=True)
class CodeLength:
    """The bits of one quantised hypothesis: symbols, codebook and counts (REF 3.3)."""

    n_symbols: int  # d
    n_levels: int  # L
    payload_bits: int  # length of the arithmetic code actually produced
    entropy_bits: int  # ⌈d·Ĥ(p̂)⌉ + 1, the estimate the payload must match
    codebook_bits: int  # L · bits per level value
    count_bits: int  # L · ⌈log2(d + 1)⌉: the histogram the decoder needs

    @property
    def message_bits(self) -> int:
        """ℓ: payload + codebook + counts."""
        return self.payload_bits + self.codebook_bits + self.count_bits

    @property
    def prefix_free_bits(self) -> float:
        """ℓ + 2·log2 ℓ: the length of a prefix-free code for the message (O(1) dropped)."""
        ell = self.message_bits
        return float(ell + 2 * math.log2(ell)) if ell > 1 else float(ell)


def code_length(
    symbols: np.ndarray, n_levels: int, bits_per_level: int = 16, precision: int = PRECISION
) -> CodeLength:
    """Arithmetic-code `symbols` (d,) in [0, n_levels), check the decode, and count every bit."""
    if n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    symbols = np.asarray(symbols, np.int64).reshape(-1)
    counts = symbol_counts(symbols, n_levels)
    bits = arithmetic_encode(symbols, counts, precision)
    if not np.array_equal(arithmetic_decode(bits, counts, symbols.size, precision), symbols):
        raise RuntimeError("arithmetic code failed to round-trip; this is a bug")
    d = symbols.size
    return CodeLength(
        n_symbols=d,
        n_levels=n_levels if d else 0,
        payload_bits=int(bits.size),
        entropy_bits=math.ceil(empirical_entropy_bits(counts)) + 1 if d else 0,
        codebook_bits=n_levels * bits_per_level if d else 0,
        count_bits=n_levels * math.ceil(math.log2(d + 1)) if d else 0,
    )
