"""All 19 CIFAR-10-C corruptions x 5 severities on random 32 x 32 x 3 images, batched vs a loop.

For each corruption: milliseconds per image (wall and CPU, mean over the 5 severities) when the
whole batch goes through one call, and the same corruption applied image by image (a Python
loop over batches of one) on the first --loop-n images; the ratio is loop / batched CPU time.
CPU seconds are this process's user + system time, which a busy shared machine inflates less
than wall time.
Run: python benchmarks/cifar10_c.py [--n 1000] [--loop-n 50] [--names fog snow ...]
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main() -> None:
    from _common import corruption_args, describe_machine, print_table, timed

    args = corruption_args(__doc__, n=1000, n_help="images per batched call", loop_n=50)

    from bnn_shift.shift.corruptions import CIFAR10_C, corrupt
    from bnn_shift.shift.corruptions._frost import ENV_FROST_DIR

    os.environ.pop(ENV_FROST_DIR, None)  # time the procedural frost texture
    images = np.random.default_rng(0).random((args.n, 32, 32, 3), dtype=np.float32)
    loop_n = min(args.loop_n, args.n)
    print(describe_machine())
    print(f"{args.n} random 32x32x3 images per call; per-image loop on {loop_n}\n")

    rows, total_wall, total_cpu = [], 0.0, 0.0
    for name in args.names or list(CIFAR10_C):
        entry = CIFAR10_C[name]
        corrupt(images[:4], name, 1, benchmark="cifar10-c")  # warm-up (imports, caches)
        wall = cpu = loop_cpu = 0.0
        for level in entry.severities:
            w, c = timed(lambda: corrupt(images, name, level, benchmark="cifar10-c"))  # noqa: B023
            rng = np.random.default_rng(level)

            def loop(level=level, rng=rng, entry=entry):
                for i in range(loop_n):
                    entry.fn(images[i : i + 1], level, rng)

            wall, cpu, loop_cpu = wall + w, cpu + c, loop_cpu + timed(loop)[1]
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
        levels = len(entry.severities)
        per_image = 1e3 / levels / args.n
        loop_ms = loop_cpu * 1e3 / levels / loop_n
        rows.append([name, wall * per_image, cpu * per_image, loop_ms, loop_ms / (cpu * per_image)])
    rows.append(["all (sum)", total_wall * 1e3 / 5 / args.n, total_cpu * 1e3 / 5 / args.n, "", ""])
    print_table(
        [
            "corruption",
            "batched wall ms/img",
            "batched CPU ms/img",
            "loop CPU ms/img",
            "loop/batched (CPU)",
        ],
        rows,
    )
    print(
        f"\nall corruptions x 5 severities on {args.n} images: {total_wall:.1f} s wall, "
        f"{total_cpu:.1f} s CPU; load average at the end {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
