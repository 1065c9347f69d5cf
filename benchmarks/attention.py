"""Forward+backward time of sequence-MLR attention against standard attention, same d_head.

For each sequence length T, random features q, k (H, T, d_head) and values v (H, T, d_head)
go through each method's attention core (features -> mixed values), jitted together with its
gradient with respect to q, k and v. Methods, timed interleaved in the same process:

  standard     `Full`: dense masked softmax attention, the baseline the paper (and its
               reference code) compares against.
  blocked      `hierarchical_attention` with all d_head dims at every level: standard attention
               with the same causal block skipping the MLR code uses. MLR / blocked isolates
               what the low-rank levels save; MLR / standard is the headline ratio.
  mlr-4x16     `SequenceMLR((16,) * 4)`: 4 levels of rank 16.
  mlr-8x8      `SequenceMLR((8,) * 8)`: 8 levels of rank 8 (REFERENCE §2.9 equal-rank case);
               only for T >= 1024, since its finest blocks (T/128) must hold >= 8 positions.
  mlr-lm       `SequenceMLR((32, 8, 6, 4, 4, 4, 4, 2), normalize="count")`: the LM config.

Columns: median ms of fwd+bwd, ratio to standard (and to blocked), spread = (max - min) /
median of the repeats, and XLA's static flop count of the compiled fwd+bwd program (exact,
immune to machine noise). Then, per MLR config, the paper-convention score FLOPs per head
(2·T·Σ_l T_l·r_l against 2·T²·d_head) and the key cache per level (T_l·r_l per head).
`--layer` times whole `MultiHeadAttention` layers (projections included) instead.

    python benchmarks/attention.py --repeats 5
"""

from __future__ import annotations

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
from _common import describe_machine, interleaved_times, median, print_table, spread

from bnn_shift.attention import (
    Full,
    MultiHeadAttention,
    SequenceMLR,
    StandardScorer,
    hierarchical_attention,
)

MLR_CONFIGS = {
    "mlr-4x16": ((16,) * 4, "none"),
    "mlr-8x8": ((8,) * 8, "none"),
    "mlr-lm": ((32, 8, 6, 4, 4, 4, 4, 2), "count"),
}
BLOCKED_LEVELS = 8


def valid(structure: SequenceMLR, t: int) -> bool:
    try:
        structure.sizes(t)
    except ValueError:
        return False
    return True


def structures(t: int, d_head: int, causal: bool) -> dict[str, object]:
    """The methods that can run at length T."""

    def blocked(q, k, v, scale):
        sizes = tuple(t // 2**level for level in range(BLOCKED_LEVELS))
        return hierarchical_attention(
            scale * q, k, v, sizes=sizes, dims=(d_head,) * BLOCKED_LEVELS,
            scales=(1.0,) * BLOCKED_LEVELS, causal=causal,
        )  # fmt: skip

    methods: dict[str, object] = {"standard": Full(causal), "blocked": blocked}
    for name, (ranks, normalize) in MLR_CONFIGS.items():
        structure = SequenceMLR(ranks, normalize=normalize, causal=causal)
        if valid(structure, t):
            methods[name] = structure
    return methods


def core_programs(t: int, heads: int, d_head: int, causal: bool, seed: int):
    """name -> (jitted fwd+bwd, args) on the attention core."""
    keys = jax.random.split(jax.random.key(seed), 4)
    q, k, v, w = (jax.random.normal(key, (heads, t, d_head)) for key in keys)
    programs = {}
    for name, structure in structures(t, d_head, causal).items():

        def loss(q, k, v, w, structure=structure):
            return jnp.sum(structure(q, k, v, d_head**-0.5) * w)

        programs[name] = (jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))), (q, k, v, w))
    return programs


def layer_programs(t: int, heads: int, d_head: int, causal: bool, seed: int):
    """name -> (jitted fwd+bwd, args) on whole MultiHeadAttention layers."""
    d_model = heads * d_head
    keys = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(keys[0], (t, d_model))
    scorer = StandardScorer(d_model, heads, key=keys[1], mup_logits=False)
    programs = {}
    for name, structure in structures(t, d_head, causal).items():
        if name == "blocked":
            continue
        layer = MultiHeadAttention(scorer, structure, key=keys[2])
        params, static = eqx.partition(layer, eqx.is_inexact_array)

        def loss(params, x, static=static):
            return jnp.sum(jnp.sin(eqx.combine(params, static)(x)))

        programs[name] = (jax.jit(jax.value_and_grad(loss)), (params, x))
    return programs


def xla_flops(fn, args) -> float:
    try:
        cost = fn.lower(*args).cost_analysis()
    except Exception:  # cost analysis is best effort on some backends
        return float("nan")
    cost = (cost[0] if isinstance(cost, list) else cost) or {}
    return float(cost.get("flops", float("nan")))


def run(t: int, args, causal: bool) -> dict[str, float]:
    build = layer_programs if args.layer else core_programs
    programs = build(t, args.heads, args.d_head, causal, args.seed)
    calls = {name: (lambda fn=fn, a=a: fn(*a)) for name, (fn, a) in programs.items()}
    times, first = interleaved_times(calls, args.repeats)
    base = median(times["standard"])
    blocked = median(times["blocked"]) if "blocked" in times else None
    rows = []
    for name, (fn, a) in programs.items():
        ms = median(times[name])
        rows.append(
            [name, 1e3 * ms, ms / base, "n/a" if blocked is None else ms / blocked,
             spread(times[name]), xla_flops(fn, a), first[name]]
        )  # fmt: skip
    print(f"\nT = {t}, {'causal' if causal else 'non-causal'}, H = {args.heads}, "
          f"d_head = {args.d_head}{', whole layer' if args.layer else ''}")  # fmt: skip
    print_table(
        ["method", "ms (median)", "x standard", "x blocked", "spread", "XLA flops", "first s"],
        rows,
    )
    return {name: median(times[name]) / base for name in times}


def ratio_cell(ratios: dict[str, float], name: str) -> object:
    return ratios.get(name, "n/a")


def accounting(lengths, d_head: int) -> None:
    print("\nScore FLOPs per head (paper convention, 2·T·Σ T_l·r_l) and key cache per level")
    for name, (ranks, _) in MLR_CONFIGS.items():
        structure = SequenceMLR(ranks)
        for t in (t for t in lengths if valid(structure, t)):
            flops = structure.score_flops(t, d_head)
            standard = Full().score_flops(t, d_head)
            cache = structure.key_cache_sizes(t)
            print(
                f"  {name:8s} T={t:5d}: score FLOPs {flops:.4g} vs standard {standard:.4g} "
                f"({flops / standard:.3f}x); key cache per level {list(cache)} = {sum(cache)} "
                f"vs {t * d_head} ({sum(cache) / (t * d_head):.3f}x)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-head", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layer", action="store_true", help="time whole MultiHeadAttention")
    parser.add_argument("--non-causal", action="store_true", help="also time non-causal")
    args = parser.parse_args()
    if any(sum(ranks) != args.d_head for ranks, _ in MLR_CONFIGS.values()):
        parser.error("the MLR configs need --d-head 64")
    print(describe_machine())
    summary = []
    for causal in (True, False) if args.non_causal else (True,):
        for t in args.lengths:
            ratios = run(t, args, causal)
            mask = "causal" if causal else "non-causal"
            summary.append([t, mask, *(ratio_cell(ratios, name) for name in MLR_CONFIGS)])
    print("\nMLR / standard (target <= 0.8 at T = 2048)")
    print_table(["T", "mask", *MLR_CONFIGS], summary)
    accounting(args.lengths, args.d_head)


if __name__ == "__main__":
    main()
